// Interop check of dtr's OpenID Connect and CIBA against panva's
// openid-client (and the oauth4webapi under it), clients nobody on the
// dtr team wrote. Run by ../run, which starts the server and passes its
// issuer in the environment (DTR_ISSUER). The browser is played with
// fetch and a cookie jar through dtr's own login, consent and /ciba pages.
//
// (a) discovery at /.well-known/openid-configuration (OpenID Connect
//     Discovery 1.0), the only place openid-client looks by default;
// (b) the authorization code flow with PKCE, nonce and state, the ID token
//     validated by openid-client, its signature checked against the
//     published JWKS (enableNonRepudiationChecks); UserInfo with the
//     access token;
// (c) a poll-mode CIBA request (initiateBackchannelAuthentication),
//     approved by alice on /ciba, collected by
//     pollBackchannelAuthenticationGrant with its ID token.
//
// Exits non-zero on any failure.

import * as client from 'openid-client'

function env(name) {
  const v = process.env[name]
  if (!v) throw new Error(`missing environment variable ${name}`)
  return v
}

function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`)
  console.log(`ok: ${what}`)
}

const issuer = new URL(env('DTR_ISSUER'))
const REDIRECT = 'http://127.0.0.1:9/cb'

// A browser: cookies kept, redirects not followed (we read Location).
const jar = new Map()
async function go(url, form) {
  const headers = { cookie: [...jar].map(([k, v]) => `${k}=${v}`).join('; ') }
  const init = { redirect: 'manual', headers }
  if (form) {
    init.method = 'POST'
    init.body = new URLSearchParams(form)
    headers['content-type'] = 'application/x-www-form-urlencoded'
  }
  const r = await fetch(new URL(url, issuer), init)
  for (const c of r.headers.getSetCookie()) {
    const [pair] = c.split(';')
    const i = pair.indexOf('=')
    jar.set(pair.slice(0, i), pair.slice(i + 1))
  }
  return r
}
const unescape = (s) => s.replaceAll('&amp;', '&').replaceAll('&quot;', '"').replaceAll('&lt;', '<').replaceAll('&gt;', '>').replaceAll('&#39;', "'")
function field(html, name) {
  const m = html.match(new RegExp(`name="${name}" value="([^"]*)"`))
  if (!m) throw new Error(`no ${name} in page: ${html.slice(0, 500)}`)
  return unescape(m[1])
}

// (a) discovery
const rp = await client.discovery(issuer, 'oidc-rp', 'oidc-rp-secret', client.ClientSecretBasic('oidc-rp-secret'), {
  execute: [client.allowInsecureRequests],
})
client.enableNonRepudiationChecks(rp)
const meta = rp.serverMetadata()
check(meta.issuer === issuer.href.replace(/\/$/, ''), 'discovered through /.well-known/openid-configuration')
check(meta.userinfo_endpoint?.endsWith('/userinfo'), 'metadata: userinfo_endpoint')
check(meta.id_token_signing_alg_values_supported?.includes('RS256'), 'metadata: RS256 ID tokens')
check(meta.backchannel_authentication_endpoint?.endsWith('/bc-authorize'), 'metadata: backchannel_authentication_endpoint')

// (b) the code flow
const verifier = client.randomPKCECodeVerifier()
const nonce = client.randomNonce()
const state = client.randomState()
const authUrl = client.buildAuthorizationUrl(rp, {
  redirect_uri: REDIRECT,
  scope: 'openid profile email',
  code_challenge: await client.calculatePKCECodeChallenge(verifier),
  code_challenge_method: 'S256',
  nonce,
  state,
})
let r = await go(authUrl)
check(r.status === 303 && r.headers.get('location').startsWith('/login'), 'authorize: sign in first')
let page = await (await go(r.headers.get('location'))).text()
r = await go('/login', {
  csrf: field(page, 'csrf'),
  return_to: field(page, 'return_to'),
  username: 'alice',
  password: 'alice-password',
})
check(r.status === 303, 'signed in as alice')
page = await (await go(r.headers.get('location'))).text()
r = await go('/authorize/consent', { request: field(page, 'request'), csrf: field(page, 'csrf'), decision: 'approve' })
const callback = new URL(r.headers.get('location'))
check(callback.href.startsWith(REDIRECT) && callback.searchParams.get('code'), 'consented: redirected with a code')
const tokens = await client.authorizationCodeGrant(rp, callback, {
  pkceCodeVerifier: verifier,
  expectedNonce: nonce,
  expectedState: state,
})
const claims = tokens.claims()
check(claims.sub === 'alice' && claims.aud === 'oidc-rp', 'ID token validated by openid-client (signature against the JWKS, iss, aud, nonce)')
check(typeof claims.auth_time === 'number', 'ID token: auth_time')
const info = await client.fetchUserInfo(rp, tokens.access_token, claims.sub)
check(info.name === 'Alice Example' && info.email === 'alice@example.com', 'UserInfo: profile and email claims')

// (c) CIBA, poll mode
const bank = await client.discovery(issuer, 'ciba-rp', 'ciba-rp-secret', client.ClientSecretBasic('ciba-rp-secret'), {
  execute: [client.allowInsecureRequests],
})
client.enableNonRepudiationChecks(bank)
const bc = await client.initiateBackchannelAuthentication(bank, {
  scope: 'openid',
  login_hint: 'alice',
  binding_message: 'INTEROP-7',
})
check(typeof bc.auth_req_id === 'string' && bc.expires_in > 0, 'CIBA: auth_req_id, expires_in')
page = await (await go('/ciba')).text()
check(page.includes('INTEROP-7'), 'CIBA: alice sees the binding message on /ciba')
r = await go('/ciba', { id: field(page, 'id'), csrf: field(page, 'csrf'), decision: 'approve' })
check(r.status === 303, 'CIBA: alice approved')
const ciba = await client.pollBackchannelAuthenticationGrant(bank, bc)
check(ciba.claims().sub === 'alice' && ciba.claims().aud === 'ciba-rp', 'CIBA: token and validated ID token through pollBackchannelAuthenticationGrant')
console.log('openid-client interop: all checks passed')
