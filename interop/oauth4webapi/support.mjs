// What both oauth4webapi interop scripts (interop.mjs, direct.mjs) need:
// their environment, the check that prints each passed step, and
// oauth4webapi's options for the loopback test server.

import * as oauth from 'oauth4webapi'

export const DEFERRED_GRANT = 'urn:ietf:params:oauth:grant-type:deferred'

export function env(name) {
  const v = process.env[name]
  if (!v) throw new Error(`missing environment variable ${name}`)
  return v
}

export function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`)
  console.log(`ok: ${what}`)
}

// The test server's issuer is http://127.0.0.1:PORT; oauth4webapi refuses
// plain http unless told otherwise.
export const insecure = { [oauth.allowInsecureRequests]: true }

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

// Requests with a DPoP handle are retried once on use_dpop_nonce, the way
// oauth4webapi's documentation shows (RFC 9449 section 8); the handle
// remembers the nonce itself.
export async function withNonceRetry(send) {
  try {
    return await send()
  } catch (err) {
    if (oauth.isDPoPNonceError(err)) return await send()
    throw err
  }
}
