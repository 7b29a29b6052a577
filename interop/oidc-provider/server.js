// panva's oidc-provider as the peer of the dtr-client interop test
// (interop/run): one confidential client allowed client credentials and
// the device grant (RFC 8628), in-memory storage, opaque access tokens.
//
// The provider's own device pages need a login and consent UI; this test
// has no browser, so POST /test/approve (form: user_code) plays the user
// who approves: it records a grant for a test account on the pending
// device code, as the provider's confirmation page would. The hook exists
// only in this test server.
//
// Environment: PORT (required). Prints "ready" on stdout once listening.
import Provider from 'oidc-provider';
import { MapAdapter, nowS } from './map-adapter.js';

const port = Number(process.env.PORT);
const issuer = `http://127.0.0.1:${port}`;
const ACCOUNT = 'interop-user';

const provider = new Provider(issuer, {
  adapter: MapAdapter,
  clients: [{
    client_id: 'interop',
    client_secret: 'interop-secret-0123456789',
    token_endpoint_auth_method: 'client_secret_basic',
    grant_types: ['client_credentials', 'urn:ietf:params:oauth:grant-type:device_code'],
    response_types: [],
    redirect_uris: [],
    scope: 'read',
  }],
  scopes: ['openid', 'read'],
  features: {
    clientCredentials: { enabled: true },
    deviceFlow: { enabled: true },
    revocation: { enabled: true },
    devInteractions: { enabled: false },
  },
  findAccount: async (_ctx, sub) => (sub === ACCOUNT ? { accountId: sub, claims: async () => ({ sub }) } : undefined),
});
provider.on('server_error', (_ctx, err) => console.error('server_error', err));

// The test hook standing in for the user at the verification URI.
provider.use(async (ctx, next) => {
  if (ctx.method !== 'POST' || ctx.path !== '/test/approve') return next();
  const chunks = [];
  for await (const c of ctx.req) chunks.push(c);
  const userCode = new URLSearchParams(Buffer.concat(chunks).toString()).get('user_code') || '';
  // The provider stores user codes without the display dash, upper case.
  const code = await provider.DeviceCode.findByUserCode(userCode.replace(/[^a-zA-Z]/g, '').toUpperCase());
  if (!code) { ctx.status = 404; ctx.body = { error: 'unknown user_code' }; return; }
  const grant = new provider.Grant({ accountId: ACCOUNT, clientId: code.clientId });
  // The device authorization request's parameters hold the scope asked for.
  grant.addOIDCScope(code.params?.scope || 'read');
  code.scope = code.params?.scope || 'read';
  code.grantId = await grant.save();
  code.accountId = ACCOUNT;
  code.authTime = nowS();
  await code.save();
  ctx.status = 204;
});

const server = provider.listen(port, '127.0.0.1');
server.on('listening', () => console.log('ready'));
