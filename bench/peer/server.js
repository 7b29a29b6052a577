// The peer of bench/run: panva's oidc-provider with an in-memory adapter,
// opaque access tokens (the default format), one confidential client
// allowed client credentials and the device grant (RFC 8628).
//
// The adapter is a plain Map rather than the library's quick-start one,
// which is an LRU of 1,000 entries: the tokens of row 1 would evict the
// seeded device codes and turn row 2 into invalid_grant answers.
//
// Environment: PORT (required), SEED_DEVICE_CODES (number of pending device
// codes to create at start), SEED_FILE (where their device_code values are
// written, one a line). Prints "ready" on stdout once listening and seeded.
import Provider from 'oidc-provider';
import { writeFileSync } from 'node:fs';

const port = Number(process.env.PORT);
const seed = Number(process.env.SEED_DEVICE_CODES || 0);
const issuer = `http://127.0.0.1:${port}`;
const CLIENT = { id: 'bench', secret: 'bench-secret-0123456789' };

// The oidc-provider adapter interface over Maps; expiry checked on read.
const store = new Map();
const userCodes = new Map();
const nowS = () => Math.floor(Date.now() / 1000);
class MapAdapter {
  constructor(model) { this.model = model; }
  key(id) { return `${this.model}:${id}`; }
  async upsert(id, payload, expiresIn) {
    store.set(this.key(id), { payload, exp: expiresIn ? nowS() + expiresIn : Infinity });
    if (payload.userCode) userCodes.set(payload.userCode, id);
  }
  async find(id) {
    const e = store.get(this.key(id));
    if (!e) return undefined;
    if (e.exp <= nowS()) { store.delete(this.key(id)); return undefined; }
    return e.payload;
  }
  async findByUserCode(userCode) {
    const id = userCodes.get(userCode);
    return id ? this.find(id) : undefined;
  }
  async findByUid(uid) {
    for (const [k, e] of store) if (k.startsWith(`${this.model}:`) && e.payload.uid === uid) return e.payload;
    return undefined;
  }
  async consume(id) {
    const e = store.get(this.key(id));
    if (e) e.payload.consumed = nowS();
  }
  async destroy(id) { store.delete(this.key(id)); }
  async revokeByGrantId(grantId) {
    for (const [k, e] of store) if (e.payload.grantId === grantId) store.delete(k);
  }
}

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
