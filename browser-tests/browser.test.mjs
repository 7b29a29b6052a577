// A real browser through dtr's pages: headless Chromium (Debian's package,
// driven by playwright-core) against `dtr serve` started here with a
// config file written here, and a tiny loopback receiver standing in for
// the client's redirect URI. JavaScript is off in the browser: the pages
// must work without it.
//
//   1. authorization code grant: /authorize -> login -> consent -> the
//      browser lands on the client's redirect URI with code, state and iss
//      (so the consent page's Content-Security-Policy form-action lets the
//      redirect after the form through); the code is exchanged for tokens;
//   2. a deferred request (completion_mode=deferred on /authorize and at
//      /token) that policy sends to the user: a signed-out browser opens
//      the interaction_uri, logs in, approves; the poll returns the tokens;
//   2b. deferral at the authorization endpoint, answered with
//      response_mode=form_post: with JavaScript off the browser shows the
//      form's Continue button, which posts deferral_code, state and iss to
//      the client; the deferral is polled with the PKCE verifier first;
//   3. the review console, with JavaScript on (its one inline script,
//      allowed by hash): a reviewer signs in, a new deferral appears in
//      the queue without a reload (server-sent events), the reviewer
//      narrows the scope and approves; screenshots of the queue and the
//      detail page are saved.
//
// Environment: DTR_BIN (the dtr binary, required), CHROMIUM (default
// /usr/bin/chromium), BROWSER_TEST_KEEP=1 keeps the temp dir (screenshots
// of the consent page and the review console, server log),
// BROWSER_TEST_SCREENSHOTS=dir also copies the console's screenshots there.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync, rmSync, createWriteStream, copyFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

const DTR_BIN = process.env.DTR_BIN;
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const ADMIN_TOKEN = 'browser-test-admin-token-0123456789abcdef';
const CLIENT = { id: 'web', secret: 'web-secret-browser' };
const USER = { name: 'alice', password: 'alice-password' };
const SERVICE = { id: 'svc', secret: 'svc-secret-browser' };
const DIRECT = { id: 'direct', secret: 'direct-secret-browser' };
const REVIEWER = { name: 'rita', password: 'rita-password' };
const SECOND = { name: 'sam', password: 'sam-password' };
// Every wait is bounded; a hang fails the test rather than CI.
const STEP_MS = 15000;

const work = mkdtempSync(join(tmpdir(), 'dtr-browser-'));
let server; // the dtr child process
let issuer;
let receiver; // the client's redirect URI
let redirectUri;
const received = []; // query parameters of every request to the redirect URI
let context; // the browser
const cspReports = [];

function b64url(buf) {
  return Buffer.from(buf).toString('base64url');
}

function pkce() {
  const verifier = b64url(randomBytes(32));
  const challenge = b64url(createHash('sha256').update(verifier).digest());
  return { verifier, challenge };
}

async function startReceiver() {
  receiver = createServer((req, res) => {
    const url = new URL(req.url, 'http://127.0.0.1');
    if (url.pathname === '/cb' && req.method === 'POST') {
      // response_mode=form_post: the parameters are the form body.
      let body = '';
      req.on('data', (c) => (body += c));
      req.on('end', () => {
        received.push({ ...Object.fromEntries(new URLSearchParams(body)), method: 'POST' });
        res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
        res.end('<!doctype html><title>client</title><h1>Client received the response</h1>');
      });
    } else if (url.pathname === '/cb') {
      received.push(Object.fromEntries(url.searchParams));
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end('<!doctype html><title>client</title><h1>Client received the response</h1>');
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise((resolve) => receiver.listen(0, '127.0.0.1', resolve));
  redirectUri = `http://127.0.0.1:${receiver.address().port}/cb`;
}

async function startServer() {
  const config = `
listen = "127.0.0.1:0"
database = "sqlite://${work}/dtr.db"
dev_mode = true

[deferral]
expires_in = 120
interval = 1

[admin]
token = "${ADMIN_TOKEN}"

[[clients]]
client_id = "${CLIENT.id}"
client_secret = "${CLIENT.secret}"
grant_types = ["authorization_code", "refresh_token"]
scope = "read profile"
redirect_uris = ["${redirectUri}"]

[[users]]
username = "${USER.name}"
password = "${USER.password}"

[[clients]]
client_id = "${DIRECT.id}"
client_secret = "${DIRECT.secret}"
grant_types = ["authorization_code"]
scope = "read reports"
redirect_uris = ["${redirectUri}"]
deferred_authorization_endpoint = true

[[clients]]
client_id = "${SERVICE.id}"
client_secret = "${SERVICE.secret}"
grant_types = ["client_credentials"]
scope = "read payments"

[[users]]
username = "${REVIEWER.name}"
password = "${REVIEWER.password}"
roles = ["reviewer"]
groups = ["ops"]
name = "Rita Reviewer"

[[users]]
username = "${SECOND.name}"
password = "${SECOND.password}"
roles = ["reviewer"]
groups = ["ops"]

[[authorization_details_types]]
type = "payment_initiation"
decrease = ["instructedAmount.amount"]
equal = ["instructedAmount.currency", "creditorName"]

[[policy]]
scope_any = ["profile"]
action = "interaction"

[[policy]]
authorization_details_type = "payment_initiation"
action = "review"
approvers = ["group:ops"]
approvals_required = 2

[[policy]]
scope_any = ["payments"]
action = "review"
approvers = ["group:ops"]

[[policy]]
scope_any = ["reports"]
action = "approve_after"
approve_after_seconds = 1
`;
  writeFileSync(join(work, 'dtr.toml'), config);
  server = spawn(DTR_BIN, ['serve', '--config', join(work, 'dtr.toml')], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  server.stderr.pipe(createWriteStream(join(work, 'server.log')));
  const lines = createInterface({ input: server.stdout });
  issuer = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('dtr serve printed no address')), STEP_MS);
    server.once('exit', (code) => reject(new Error(`dtr serve exited with ${code}`)));
    lines.on('line', (line) => {
      // "dtr listening on ADDR, issuer URL"
      const m = /^dtr listening on \S+, issuer (\S+)/.exec(line);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
  });
  lines.on('line', () => {}); // keep draining stdout
}

async function tokenRequest(params, client = CLIENT) {
  const auth = Buffer.from(`${client.id}:${client.secret}`).toString('base64');
  const r = await fetch(`${issuer}/token`, {
    method: 'POST',
    headers: {
      authorization: `Basic ${auth}`,
      'content-type': 'application/x-www-form-urlencoded',
    },
    body: new URLSearchParams(params),
    signal: AbortSignal.timeout(STEP_MS),
  });
  return { status: r.status, json: await r.json() };
}

function authorizeUrl(scope, extra = {}, client = CLIENT) {
  const { verifier, challenge } = pkce();
  const state = b64url(randomBytes(12));
  const url = new URL(`${issuer}/authorize`);
  for (const [k, v] of Object.entries({
    response_type: 'code',
    client_id: client.id,
    redirect_uri: redirectUri,
    scope,
    state,
    code_challenge: challenge,
    code_challenge_method: 'S256',
    ...extra,
  })) {
    url.searchParams.set(k, v);
  }
  return { url: url.toString(), verifier, state };
}

async function signIn(page) {
  assert.equal(new URL(page.url()).pathname, '/login', page.url());
  assert.equal(await page.locator('h1').textContent(), 'Sign in');
  await page.getByLabel('Username').fill(USER.name);
  await page.getByLabel('Password').fill(USER.password);
  await page.getByRole('button', { name: 'Sign in' }).click();
}

// Consents on the page the browser is on and waits for the redirect to
// the client; returns what the receiver got.
async function consentAndLand(page, screenshot) {
  await page.waitForURL((u) => u.pathname === '/authorize', { timeout: STEP_MS });
  assert.equal(await page.locator('h1').textContent(), 'Allow access?');
  if (screenshot) {
    await page.screenshot({ path: join(work, screenshot), fullPage: true });
  }
  const before = received.length;
  await page.getByRole('button', { name: 'Allow' }).click();
  await page.waitForURL((u) => u.toString().startsWith(`${redirectUri}?`), { timeout: STEP_MS });
  assert.equal(await page.locator('h1').textContent(), 'Client received the response');
  assert.equal(received.length, before + 1, 'the receiver saw the redirect');
  return received[received.length - 1];
}

before(async () => {
  assert.ok(DTR_BIN, 'DTR_BIN must point to the dtr binary');
  await startReceiver();
  await startServer();
  // A fresh profile in the temp dir; no JavaScript.
  context = await chromium.launchPersistentContext(join(work, 'profile'), {
    executablePath: CHROMIUM,
    headless: true,
    javaScriptEnabled: false,
    timeout: STEP_MS,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  context.setDefaultTimeout(STEP_MS);
  context.on('console', (msg) => {
    if (/Content Security Policy/i.test(msg.text())) cspReports.push(msg.text());
  });
});

after(async () => {
  await context?.close();
  if (server && server.exitCode === null) {
    server.kill('SIGTERM');
    await new Promise((resolve) => server.once('exit', resolve));
  }
  await new Promise((resolve) => (receiver ? receiver.close(resolve) : resolve()));
  if (process.env.BROWSER_TEST_KEEP) {
    console.log(`kept ${work} (consent.png, review-queue.png, review-detail.png, server.log)`);
  } else {
    rmSync(work, { recursive: true, force: true });
  }
});

test('login, consent and the redirect to the client; the code buys tokens', async () => {
  const page = await context.newPage();
  const req = authorizeUrl('read');
  await page.goto(req.url);
  await signIn(page);
  const got = await consentAndLand(page, 'consent.png');
  assert.equal(got.state, req.state);
  assert.equal(got.iss, issuer);
  assert.ok(got.code, 'a code arrived');
  assert.deepEqual(cspReports, [], 'no Content-Security-Policy violation');

  const t = await tokenRequest({
    grant_type: 'authorization_code',
    code: got.code,
    code_verifier: req.verifier,
    redirect_uri: redirectUri,
  });
  assert.equal(t.status, 200, JSON.stringify(t.json));
  assert.equal(t.json.token_type, 'Bearer');
  assert.equal(t.json.scope, 'read');
  assert.ok(t.json.refresh_token);

  // Signed in and consented: the next request goes straight through.
  const again = authorizeUrl('read');
  await page.goto(again.url);
  await page.waitForURL((u) => u.toString().startsWith(`${redirectUri}?`));
  assert.equal(received[received.length - 1].state, again.state);
  await page.close();
});

test('a deferral approved by the user at the interaction page', async () => {
  const page = await context.newPage();
  const req = authorizeUrl('profile', { completion_mode: 'deferred' });
  await page.goto(req.url);
  const got = await consentAndLand(page);
  assert.equal(got.state, req.state);
  await page.close();

  const deferred = await tokenRequest({
    grant_type: 'authorization_code',
    code: got.code,
    code_verifier: req.verifier,
    redirect_uri: redirectUri,
    completion_mode: 'deferred',
  });
  assert.equal(deferred.status, 400, JSON.stringify(deferred.json));
  assert.equal(deferred.json.error, 'interaction_required');
  const { deferral_code: code, interaction_uri: interactionUri } = deferred.json;
  assert.ok(code && interactionUri, JSON.stringify(deferred.json));
  assert.ok(interactionUri.startsWith(`${issuer}/interact/`), interactionUri);

  // The user opens the link signed out (as on another device).
  await context.clearCookies();
  const p = await context.newPage();
  await p.goto(interactionUri);
  await signIn(p);
  await p.waitForURL(interactionUri);
  assert.equal(await p.locator('h1').textContent(), 'Review access request');
  const text = await p.locator('body').textContent();
  assert.match(text, /Signed in as alice/);
  assert.match(text, /profile/);

  // Opening the page decided nothing; the server saw the interaction begin.
  const poll = { grant_type: 'urn:ietf:params:oauth:grant-type:deferred', deferral_code: code };
  const pending = await tokenRequest(poll);
  assert.equal(pending.json.error, 'interaction_pending', JSON.stringify(pending.json));

  await p.getByRole('button', { name: 'Approve' }).click();
  await p.waitForLoadState();
  assert.match(await p.locator('body').textContent(), /close this page/);
  await p.close();

  const t = await tokenRequest(poll);
  assert.equal(t.status, 200, JSON.stringify(t.json));
  assert.equal(t.json.scope, 'profile');
  assert.ok(t.json.refresh_token);
  assert.deepEqual(cspReports, [], 'no Content-Security-Policy violation');
});

test('deferral at the authorization endpoint, delivered by form_post without JavaScript', async () => {
  await context.clearCookies();
  const page = await context.newPage();
  const req = authorizeUrl(
    'reports',
    { completion_mode: 'deferred', response_mode: 'form_post' },
    DIRECT,
  );
  await page.goto(req.url);
  await signIn(page);
  await page.waitForURL((u) => u.pathname === '/authorize', { timeout: STEP_MS });
  assert.equal(await page.locator('h1').textContent(), 'Allow access?');
  await page.getByRole('button', { name: 'Allow' }).click();
  // The form post page: with JavaScript off, its Continue button.
  await page.waitForLoadState();
  assert.equal(await page.locator('h1').textContent(), 'Returning to the application');
  const before = received.length;
  await page.getByRole('button', { name: 'Continue' }).click();
  await page.waitForURL((u) => u.toString() === redirectUri, { timeout: STEP_MS });
  assert.equal(await page.locator('h1').textContent(), 'Client received the response');
  assert.equal(received.length, before + 1, 'the receiver saw the form post');
  const got = received[received.length - 1];
  await page.close();
  assert.equal(got.method, 'POST');
  assert.equal(got.state, req.state);
  assert.equal(got.iss, issuer);
  assert.equal(got.code, undefined, 'no code: the deferral came instead');
  assert.ok(got.deferral_code && got.expires_in && got.interval, JSON.stringify(got));
  assert.deepEqual(cspReports, [], 'no Content-Security-Policy violation');

  // The first poll proves the PKCE verifier; later polls do not repeat it.
  const poll = { grant_type: 'urn:ietf:params:oauth:grant-type:deferred', deferral_code: got.deferral_code };
  let t = await tokenRequest(
    { ...poll, code_verifier: req.verifier, redirect_uri: redirectUri },
    DIRECT,
  );
  for (let i = 0; t.status !== 200 && i < 20; i += 1) {
    assert.equal(t.json.error, 'authorization_pending', JSON.stringify(t.json));
    await new Promise((r) => setTimeout(r, Number(got.interval) * 1000 + 100));
    t = await tokenRequest(poll, DIRECT);
  }
  assert.equal(t.status, 200, JSON.stringify(t.json));
  assert.equal(t.json.scope, 'reports');
});

test('the review console: live queue, narrowing and approval', async () => {
  // JavaScript on, in a profile of its own: the queue's live updates.
  const js = await chromium.launchPersistentContext(join(work, 'profile-js'), {
    executablePath: CHROMIUM,
    headless: true,
    javaScriptEnabled: true,
    timeout: STEP_MS,
    viewport: { width: 1024, height: 768 },
    args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'],
  });
  js.setDefaultTimeout(STEP_MS);
  const violations = [];
  js.on('console', (msg) => {
    if (/Content Security Policy/i.test(msg.text())) violations.push(msg.text());
  });
  try {
    const page = await js.newPage();
    await page.goto(`${issuer}/review`);
    await page.getByLabel('Username').fill(REVIEWER.name);
    await page.getByLabel('Password').fill(REVIEWER.password);
    await page.getByRole('button', { name: 'Sign in', exact: true }).click();
    await page.waitForURL((u) => u.pathname === '/review');
    assert.equal(await page.locator('h1').textContent(), 'Deferred requests');
    assert.match(await page.locator('body').textContent(), /Signed in as rita/);
    assert.match(await page.locator('#queue').textContent(), /Nothing here/);
    // Let the event stream connect; then a deferral arrives.
    await page.waitForTimeout(1500);
    const navigations = [];
    page.on('framenavigated', (f) => {
      if (f === page.mainFrame()) navigations.push(f.url());
    });
    const deferred = await tokenRequest(
      { grant_type: 'client_credentials', scope: 'read payments', completion_mode: 'deferred' },
      SERVICE,
    );
    assert.equal(deferred.json.error, 'authorization_pending', JSON.stringify(deferred.json));
    const code = deferred.json.deferral_code;
    const row = page.locator('#queue tbody tr');
    await row.first().waitFor({ timeout: STEP_MS });
    assert.deepEqual(navigations, [], 'the queue updated without a reload');
    assert.match(await page.locator('#live').textContent(), /Queue updated/);
    assert.match(await row.first().textContent(), /waiting \d+ s/);
    await page.screenshot({ path: join(work, 'review-queue.png'), fullPage: true });

    await row.first().locator('a').click();
    await page.waitForURL((u) => u.pathname.startsWith('/review/'));
    assert.equal(await page.locator('h1').textContent(), 'Deferred request');
    await page.getByLabel('read', { exact: true }).uncheck();
    await page.screenshot({ path: join(work, 'review-detail.png'), fullPage: true });
    await page.getByRole('button', { name: 'Approve' }).click();
    await page.waitForURL((u) => u.searchParams.get('done') === 'approved');
    assert.match(await page.locator('body').textContent(), /Decided by\s*rita/);

    const poll = { grant_type: 'urn:ietf:params:oauth:grant-type:deferred', deferral_code: code };
    const t = await tokenRequest(poll, SERVICE);
    assert.equal(t.status, 200, JSON.stringify(t.json));
    assert.equal(t.json.scope, 'payments', 'narrowed by the reviewer');
    assert.deepEqual(violations, [], 'no Content-Security-Policy violation');

    const keep = process.env.BROWSER_TEST_SCREENSHOTS;
    if (keep) {
      mkdirSync(keep, { recursive: true });
      for (const f of ['review-queue.png', 'review-detail.png']) copyFileSync(join(work, f), join(keep, f));
    }
  } finally {
    await js.close();
  }
});

test('four eyes in the console: a payment narrowed by one reviewer, completed by another', async () => {
  const details = [{
    type: 'payment_initiation',
    instructedAmount: { currency: 'EUR', amount: '800.00' },
    creditorName: '<script>window.pwned = 1</script>Merchant',
  }];
  const deferred = await tokenRequest(
    {
      grant_type: 'client_credentials',
      scope: 'payments',
      authorization_details: JSON.stringify(details),
      completion_mode: 'deferred',
    },
    SERVICE,
  );
  assert.equal(deferred.json.error, 'authorization_pending', JSON.stringify(deferred.json));
  const code = deferred.json.deferral_code;
  // Each reviewer in a browser of their own (no JavaScript needed).
  async function signIn(who, profile) {
    const ctx = await chromium.launchPersistentContext(join(work, profile), {
      executablePath: CHROMIUM,
      headless: true,
      javaScriptEnabled: true,
      timeout: STEP_MS,
      args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'],
    });
    ctx.setDefaultTimeout(STEP_MS);
    const page = await ctx.newPage();
    await page.goto(`${issuer}/review`);
    await page.getByLabel('Username').fill(who.name);
    await page.getByLabel('Password').fill(who.password);
    await page.getByRole('button', { name: 'Sign in', exact: true }).click();
    await page.waitForURL((u) => u.pathname === '/review');
    return { ctx, page };
  }
  const rita = await signIn(REVIEWER, 'profile-rita');
  const sam = await signIn(SECOND, 'profile-sam');
  try {
    const open = async (page) => {
      await page.locator('#queue tbody tr', { hasText: 'payments' }).first().locator('a').click();
      await page.waitForURL((u) => u.pathname.startsWith('/review/dfr_'));
    };
    await open(rita.page);
    // A script in an authorization detail is text, never run.
    assert.match(await rita.page.locator('body').textContent(), /<script>window\.pwned = 1<\/script>Merchant/);
    assert.equal(await rita.page.evaluate(() => window.pwned), undefined);
    await rita.page.getByLabel(/instructedAmount\.amount/).fill('300.00');
    await rita.page.getByRole('button', { name: 'Approve' }).click();
    await rita.page.waitForURL((u) => u.searchParams.get('done') === 'approved');
    assert.match(await rita.page.locator('body').textContent(), /1 of 2 approvals/);
    // Still pending for the client.
    const poll = { grant_type: 'urn:ietf:params:oauth:grant-type:deferred', deferral_code: code };
    await new Promise((r) => setTimeout(r, 1100));
    assert.equal((await tokenRequest(poll, SERVICE)).json.error, 'authorization_pending');

    await open(sam.page);
    assert.match(await sam.page.locator('body').textContent(), /1 of 2 approvals, by rita/);
    await sam.page.getByRole('button', { name: 'Approve' }).click();
    await sam.page.waitForURL((u) => u.searchParams.get('done') === 'approved');
    await new Promise((r) => setTimeout(r, 1100));
    const t = await tokenRequest(poll, SERVICE);
    assert.equal(t.status, 200, JSON.stringify(t.json));
    assert.equal(t.json.authorization_details[0].instructedAmount.amount, '300.00', 'narrowed by rita, kept by sam');
  } finally {
    await rita.ctx.close();
    await sam.ctx.close();
  }
});
