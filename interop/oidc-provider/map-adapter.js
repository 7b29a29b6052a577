// An oidc-provider storage adapter over Maps, expiry checked on read; used
// by this directory's interop server and by bench/peer/server.js.
//
// A plain Map rather than the library's quick-start adapter, which is an
// LRU of 1,000 entries: in the benchmark the tokens of row 1 would evict
// the seeded device codes and turn row 2 into invalid_grant answers.

const store = new Map();
const userCodes = new Map();

/** Seconds since the epoch, as the provider counts them. */
export const nowS = () => Math.floor(Date.now() / 1000);

export class MapAdapter {
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
