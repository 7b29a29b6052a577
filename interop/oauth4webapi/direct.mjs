// Interop check of deferral at the authorization endpoint, driven by
// panva's oauth4webapi. Run by ../run, which starts the server and passes
// in the environment:
//
//   DTR_ISSUER, DTR_WEB_CLIENT_ID, DTR_WEB_CLIENT_SECRET, DTR_WEB_KEY (a
//   path to the private JWK, ES256, whose public half the server has as
//   the client's jwks), DTR_USER, DTR_PASSWORD, DTR_DEFERRED_SCOPE
//
// oauth4webapi signs the request object (RFC 9101) carrying
// completion_mode=deferred and dpop_jkt (RFC 9449 section 10) and pushes
// it (RFC 9126); a cookie-keeping fetch plays the user's browser through
// sign-in and consent; the redirect back carries deferral_code instead of
// code, checked by oauth4webapi's validateAuthResponse (state, iss); the
// deferral is then polled with oauth4webapi's generic token endpoint
// request, the PKCE verifier on the first poll only, DPoP-bound to the
// key named by dpop_jkt, until the authorization code grant's token
// response (with its refresh token) comes.
//
// Exits non-zero on any failure.

import * as oauth from 'oauth4webapi'
import { DEFERRED_GRANT, check, env, insecure, sleep, withNonceRetry } from './support.mjs'
import { readFileSync } from 'node:fs'

const REDIRECT_URI = 'https://client.example/cb'

const issuer = new URL(env('DTR_ISSUER'))
const client = { client_id: env('DTR_WEB_CLIENT_ID') }
const clientAuth = oauth.ClientSecretBasic(env('DTR_WEB_CLIENT_SECRET'))

// RFC 7638 thumbprint of a P-256 public JWK: SHA-256 of its required
// members in lexicographic order, base64url.
async function thumbprint(jwk) {
  const canonical = JSON.stringify({ crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y })
  const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(canonical))
  return Buffer.from(digest).toString('base64url')
}

// A browser: a cookie jar, redirects followed by hand so each hop is seen.
const jar = new Map()
async function browse(url, init = {}) {
  const headers = new Headers(init.headers)
  if (jar.size) headers.set('cookie', [...jar].map(([k, v]) => `${k}=${v}`).join('; '))
  const response = await fetch(url, { ...init, headers, redirect: 'manual' })
  for (const c of response.headers.getSetCookie()) {
    const [pair, ...attrs] = c.split(';')
    const [k, v] = pair.split('=')
    if (attrs.some((a) => a.trim().toLowerCase() === 'max-age=0')) jar.delete(k.trim())
    else jar.set(k.trim(), v)
  }
  return response
}
function hidden(html, name) {
  const m = html.match(new RegExp(`name="${name}" value="([^"]*)"`))
  if (!m) throw new Error(`no field ${name} in the page`)
  return m[1].replaceAll('&amp;', '&')
}
const form = (fields) => ({
  method: 'POST',
  headers: { 'content-type': 'application/x-www-form-urlencoded' },
  body: new URLSearchParams(fields).toString(),
})

const as = await oauth.processDiscoveryResponse(
  issuer, await oauth.discoveryRequest(issuer, { algorithm: 'oauth2', ...insecure }))
check(as.deferred_authorization_endpoint_supported === true, 'metadata: deferred_authorization_endpoint_supported')
check((as.request_object_signing_alg_values_supported ?? []).includes('ES256'), 'metadata: request objects signed with ES256')

const privateJwk = JSON.parse(readFileSync(env('DTR_WEB_KEY'), 'utf8'))
const signingKey = {
  key: await crypto.subtle.importKey('jwk', privateJwk, { name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign']),
  kid: privateJwk.kid,
}
const dpopKeys = await oauth.generateKeyPair('ES256', { extractable: true })
const dpop = oauth.DPoP(client, dpopKeys)
const jkt = await thumbprint(await crypto.subtle.exportKey('jwk', dpopKeys.publicKey))
const codeVerifier = oauth.generateRandomCodeVerifier()
const state = oauth.generateRandomState()

// The request object, pushed.
const requestObject = await oauth.issueRequestObject(as, client, {
  response_type: 'code',
  redirect_uri: REDIRECT_URI,
  scope: env('DTR_DEFERRED_SCOPE'),
  code_challenge: await oauth.calculatePKCECodeChallenge(codeVerifier),
  code_challenge_method: 'S256',
  state,
  completion_mode: 'deferred',
  dpop_jkt: jkt,
}, signingKey)
const par = await oauth.processPushedAuthorizationResponse(as, client,
  await oauth.pushedAuthorizationRequest(as, client, clientAuth, { request: requestObject }, insecure))
check(par.request_uri.startsWith('urn:ietf:params:oauth:request_uri:'), 'PAR: the signed request object was accepted (RFC 9101, RFC 9126)')

// The user's browser: sign in, consent, and the redirect back.
const authorize = new URL(as.authorization_endpoint)
authorize.searchParams.set('client_id', client.client_id)
authorize.searchParams.set('request_uri', par.request_uri)
let r = await browse(authorize)
check(r.status === 303, 'authorize: sends the user to sign in')
r = await browse(new URL(r.headers.get('location'), issuer))
let page = await r.text()
r = await browse(new URL('/login', issuer), form({
  csrf: hidden(page, 'csrf'),
  return_to: hidden(page, 'return_to'),
  username: env('DTR_USER'),
  password: env('DTR_PASSWORD'),
}))
check(r.status === 303, 'login: signed in')
r = await browse(new URL(r.headers.get('location'), issuer))
page = await r.text()
check(r.status === 200 && page.includes('Allow'), 'consent page shown')
r = await browse(new URL('/authorize/consent', issuer), form({
  request: hidden(page, 'request'),
  csrf: hidden(page, 'csrf'),
  decision: 'approve',
}))
check(r.status === 303, 'consent: redirected back to the client')
const back = new URL(r.headers.get('location'))
const params = oauth.validateAuthResponse(as, client, back, state)
check(params.has('deferral_code') && !params.has('code'), 'the redirect carries deferral_code instead of code (state and iss validated by oauth4webapi)')
const deferralCode = params.get('deferral_code')
let interval = Number(params.get('interval'))
const deadline = Date.now() + Number(params.get('expires_in')) * 1000
check(interval > 0 && deadline > Date.now(), 'the redirect carries expires_in and interval')

// Polling: the verifier (and redirect_uri) on the first poll only.
let first = true
let polls = 0
let token
while (!token) {
  if (Date.now() + interval * 1000 >= deadline) throw new Error('check failed: the deferral expired before it resolved')
  if (!first) await sleep(interval * 1000)
  const body = first
    ? { deferral_code: deferralCode, code_verifier: codeVerifier, redirect_uri: REDIRECT_URI }
    : { deferral_code: deferralCode }
  polls += 1
  try {
    token = await withNonceRetry(async () => {
      const response = await oauth.genericTokenEndpointRequest(as, client, clientAuth, DEFERRED_GRANT, body, { DPoP: dpop, ...insecure })
      return oauth.processGenericTokenEndpointResponse(as, client, response)
    })
  } catch (err) {
    if (!(err instanceof oauth.ResponseBodyError)) throw err
    if (err.error === 'slow_down') interval += 5
    else if (!['authorization_pending', 'interaction_required', 'interaction_pending'].includes(err.error)) throw err
    console.log(`poll ${polls}: ${err.error}`)
  }
  first = false
}
check(typeof token.access_token === 'string', `redeemed after ${polls} poll(s)`)
check(token.token_type === 'dpop', 'the token is bound to the key named by dpop_jkt')
check(typeof token.refresh_token === 'string', "the authorization code grant's response: with a refresh token")
console.log('oauth4webapi direct deferral interop: all checks passed')
