// Interop check of dtr against panva's oauth4webapi, a client nobody on
// the dtr team wrote. Run by ../run, which starts the server and passes
// its issuer and client in the environment:
//
//   DTR_ISSUER, DTR_CLIENT_ID, DTR_CLIENT_SECRET,
//   DTR_DEFERRED_SCOPE (a scope the server defers and approves by itself)
//
// (a) a DPoP-bound client credentials token (RFC 9449) through
//     oauth4webapi's own DPoP support: token_type must be DPoP;
// (b) a deferred request (draft-ietf-oauth-deferred-token-response):
//     client_credentials with completion_mode=deferred answers 400
//     authorization_pending with a deferral_code (DTR-8); it is then
//     polled with the generic token endpoint request and the grant type
//     urn:ietf:params:oauth:grant-type:deferred until the token comes
//     (DTR-15, DTR-20), DPoP-bound like the initial request (DTR-13).
//
// Exits non-zero on any failure.

import * as oauth from 'oauth4webapi'
import { DEFERRED_GRANT, check, env, insecure, sleep, withNonceRetry } from './support.mjs'

const issuer = new URL(env('DTR_ISSUER'))
const client = { client_id: env('DTR_CLIENT_ID') }
const clientAuth = oauth.ClientSecretBasic(env('DTR_CLIENT_SECRET'))
const deferredScope = env('DTR_DEFERRED_SCOPE')

async function discover() {
  const deadline = Date.now() + 30_000
  for (;;) {
    try {
      const response = await oauth.discoveryRequest(issuer, { algorithm: 'oauth2', ...insecure })
      return await oauth.processDiscoveryResponse(issuer, response)
    } catch (err) {
      if (Date.now() > deadline) throw err
      await sleep(200)
    }
  }
}

const as = await discover()
check(as.deferred_token_response_supported === true, 'metadata: deferred_token_response_supported (DTR-7)')
check((as.grant_types_supported ?? []).includes(DEFERRED_GRANT), 'metadata: the polling grant type is listed (DTR-7)')
check((as.dpop_signing_alg_values_supported ?? []).includes('ES256'), 'metadata: DPoP ES256 supported')

// (a) DPoP-bound client credentials token.
{
  const dpop = oauth.DPoP(client, await oauth.generateKeyPair('ES256'))
  const result = await withNonceRetry(async () => {
    const response = await oauth.clientCredentialsGrantRequest(as, client, clientAuth, { scope: 'read' }, { DPoP: dpop, ...insecure })
    return oauth.processClientCredentialsResponse(as, client, response)
  })
  check(typeof result.access_token === 'string' && result.access_token.length > 0, '(a) client credentials: access token issued')
  check(result.token_type === 'dpop', `(a) client credentials: token_type DPoP (oauth4webapi lower-cases it: ${result.token_type})`)
}

// (b) Deferred request driven to completion with the generic grant request.
{
  const dpop = oauth.DPoP(client, await oauth.generateKeyPair('ES256'))
  let deferral
  try {
    await withNonceRetry(async () => {
      const response = await oauth.clientCredentialsGrantRequest(
        as, client, clientAuth, { scope: deferredScope, completion_mode: 'deferred' }, { DPoP: dpop, ...insecure })
      return oauth.processClientCredentialsResponse(as, client, response)
    })
    throw new Error('check failed: (b) the request was not deferred')
  } catch (err) {
    if (!(err instanceof oauth.ResponseBodyError)) throw err
    deferral = err.cause
    check(err.status === 400 && err.error === 'authorization_pending', '(b) deferred response: 400 authorization_pending (DTR-8)')
  }
  check(typeof deferral.deferral_code === 'string' && deferral.deferral_code.length >= 27, '(b) deferral_code of at least 160 bits (DTR-9)')
  check(Number.isInteger(deferral.expires_in) && Number.isInteger(deferral.interval), '(b) expires_in and interval present (DTR-8)')

  let interval = deferral.interval
  const deadline = Date.now() + deferral.expires_in * 1000
  let polls = 0
  let token
  while (!token) {
    if (Date.now() + interval * 1000 >= deadline) throw new Error('check failed: (b) the deferral expired before it resolved')
    await sleep(interval * 1000)
    polls += 1
    try {
      token = await withNonceRetry(async () => {
        const response = await oauth.genericTokenEndpointRequest(
          as, client, clientAuth, DEFERRED_GRANT, { deferral_code: deferral.deferral_code }, { DPoP: dpop, ...insecure })
        return oauth.processGenericTokenEndpointResponse(as, client, response)
      })
    } catch (err) {
      if (!(err instanceof oauth.ResponseBodyError)) throw err
      if (err.error === 'slow_down') interval += 5 // DTR-19
      else if (err.error !== 'authorization_pending' && err.error !== 'interaction_required') throw err
      console.log(`poll ${polls}: ${err.error}`)
    }
  }
  check(typeof token.access_token === 'string', `(b) deferral redeemed after ${polls} poll(s) (DTR-20)`)
  check(token.token_type === 'dpop', '(b) the token of a DPoP-bound deferral is DPoP-bound (DTR-13, DTR-20)')
  check(token.scope === undefined || token.scope === deferredScope, '(b) scope not widened (DTR-24)')

  // Exactly once (DTR-21): the next poll is invalid_grant.
  try {
    const response = await oauth.genericTokenEndpointRequest(
      as, client, clientAuth, DEFERRED_GRANT, { deferral_code: deferral.deferral_code }, { DPoP: dpop, ...insecure })
    await oauth.processGenericTokenEndpointResponse(as, client, response)
    throw new Error('check failed: (b) a redeemed code gave a second token')
  } catch (err) {
    if (!(err instanceof oauth.ResponseBodyError)) throw err
    check(err.error === 'invalid_grant', '(b) a redeemed code is invalid_grant (DTR-21)')
  }
}

console.log('oauth4webapi interop: all checks passed')
