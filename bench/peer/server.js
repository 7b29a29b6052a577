// The peer of bench/run: panva's oidc-provider with an in-memory adapter,
// opaque access tokens (the default format), one confidential client
// allowed client credentials and the device grant (RFC 8628).
//
// The adapter is interop/oidc-provider/map-adapter.js (a plain Map: the
// library's quick-start adapter is an LRU that would evict the seeded
// device codes).
//
// Environment: PORT (required), SEED_DEVICE_CODES (number of pending device
// codes to create at start), SEED_FILE (where their device_code values are
// written, one a line). Prints "ready" on stdout once listening and seeded.
import Provider from 'oidc-provider';
import { MapAdapter } from '../../interop/oidc-provider/map-adapter.js';
import { writeFileSync } from 'node:fs';

const port = Number(process.env.PORT);
const seed = Number(process.env.SEED_DEVICE_CODES || 0);
const issuer = `http://127.0.0.1:${port}`;
const CLIENT = { id: 'bench', secret: 'bench-secret-0123456789' };

const provider = new Provider(issuer, {
  adapter: MapAdapter,
  clients: [{
    client_id: CLIENT.id,
    client_secret: CLIENT.secret,
    token_endpoint_auth_method: 'client_secret_basic',
    grant_types: ['client_credentials', 'urn:ietf:params:oauth:grant-type:device_code'],
    response_types: [],
    redirect_uris: [],
    scope: 'openid read payments',
  }],
  scopes: ['openid', 'read', 'payments'],
  features: {
    clientCredentials: { enabled: true },
    deviceFlow: { enabled: true },
    devInteractions: { enabled: false },
  },
  // Device codes live as long as dtr's bench deferrals; polling them never
  // hits expiry during a run.
  ttl: { DeviceCode: 3600, ClientCredentials: 3600 },
});
// Errors are part of the benchmark (authorization_pending); keep the
// default error logging out of the measurement.
provider.on('server_error', (_ctx, err) => console.error('server_error', err));

const server = provider.listen(port, '127.0.0.1');
server.on('listening', async () => {
  const auth = 'Basic ' + Buffer.from(`${CLIENT.id}:${CLIENT.secret}`).toString('base64');
  const codes = [];
  // Seed through the real device authorization endpoint, a few requests
  // in flight at a time.
  const one = async () => {
    const r = await fetch(`${issuer}/device/auth`, {
      method: 'POST',
      headers: { authorization: auth, 'content-type': 'application/x-www-form-urlencoded' },
      body: 'scope=openid%20read',
    });
    const j = await r.json();
    if (!j.device_code) throw new Error(`device authorization failed: ${JSON.stringify(j)}`);
    codes.push(j.device_code);
  };
  for (let i = 0; i < seed; i += 32) {
    await Promise.all(Array.from({ length: Math.min(32, seed - i) }, one));
  }
  if (process.env.SEED_FILE) writeFileSync(process.env.SEED_FILE, codes.join('\n') + (codes.length ? '\n' : ''));
  console.log('ready');
});
