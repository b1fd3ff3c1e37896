/**
 * The sidecar's HTTP surface: bodies, signatures, health, metrics, login and cookies.
 * Real database, real HTTP, stripe-node's own signing, the PayPal sandbox's signing identity.
 */
import { createHmac } from 'node:crypto';
import http from 'node:http';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signStripeWebhookForTest } from '../../src/gateways/stripe/webhook.js';
import { healthProof } from '../../src/sidecar/app.js';
import { createFixture, type Fixture, payThroughEngine } from '../support/fixture.js';
import { count, PageClient, type RunningSidecar, startSidecar, stripeEventFor } from './support.js';

const STRIPE_SECRET = 'whsec_sidecar_surface_secret_0123456789';
const PROOF_SECRET = 'sidecar-surface-proof-secret';

async function postStripe(
  s: RunningSidecar,
  payload: string | Buffer,
  signature?: string,
  type = 'application/json',
) {
  const response = await fetch(`${s.url}/webhooks/stripe`, {
    method: 'POST',
    headers: { 'content-type': type, ...(signature ? { 'stripe-signature': signature } : {}) },
    body: payload,
  });
  const text = await response.text();
  return { status: response.status, text };
}

/** A Stripe-Signature value computed by hand (HMAC-SHA256 over `t.payload`), as Stripe does. */
function v1(payload: string, t: number, secret = STRIPE_SECRET): string {
  return createHmac('sha256', secret).update(`${t}.${payload}`).digest('hex');
}

describe('sidecar HTTP surface', () => {
  let f: Fixture;
  let s: RunningSidecar;
  let secure: RunningSidecar;
  beforeAll(async () => {
    f = await createFixture({ slug: 'sidecar-surface' });
    await f.addMethod({
      rail: 'ach',
      token: 'pm_usBankAccount_processing',
      bankName: 'STRIPE TEST BANK',
      last4: '0009',
    });
    s = await startSidecar(
      f,
      { stripeSecret: STRIPE_SECRET },
      {
        healthProofSecret: PROOF_SECRET,
        loginRateLimit: { limit: 3, windowMs: 60_000 },
      },
    );
    secure = await startSidecar(f, { stripeSecret: STRIPE_SECRET }, { secureCookies: true });
  });
  afterAll(async () => {
    await secure?.close();
    await s?.close();
    await f?.close();
  });

  it('an old signed Stripe body (t more than 300 s ago) is refused and stores nothing', async () => {
    const paid = await payThroughEngine(f, f.agentKey, {
      invoice: 'INV-H3-OLD',
      amountMinor: 10_00,
      method: 'ach',
    });
    const payload = stripeEventFor(
      'payment_intent.succeeded.json',
      'evt_h3_old',
      paid.payment_id,
      paid.gateway_reference!,
    );
    const old = Math.floor(Date.now() / 1000) - 301;
    const r = await postStripe(s, payload, signStripeWebhookForTest(payload, STRIPE_SECRET, old));
    expect(r.status).toBe(400);
    expect(await count(f, "SELECT count(*) AS n FROM webhook_events WHERE event_id = 'evt_h3_old'")).toBe(0);
  });

  it('a Stripe signature dated in the future is refused even when a current t= is put in front of it', async () => {
    const paid = await payThroughEngine(f, f.agentKey, {
      invoice: 'INV-H3-FUT',
      amountMinor: 11_00,
      method: 'ach',
    });
    const payload = stripeEventFor(
      'payment_intent.succeeded.json',
      'evt_h3_future',
      paid.payment_id,
      paid.gateway_reference!,
    );
    const now = Math.floor(Date.now() / 1000);
    const future = now + 3600;
    // Plain future timestamp: refused (the sidecar's own guard).
    const plain = await postStripe(s, payload, `t=${future},v1=${v1(payload, future)}`);
    expect(plain.status).toBe(400);
    // Same signature, a harmless-looking current t= first: stripe-node verifies the LAST t=, the
    // sidecar's future guard reads the FIRST.
    const smuggled = await postStripe(s, payload, `t=${now},t=${future},v1=${v1(payload, future)}`);
    expect(smuggled.status, smuggled.text).toBe(400);
    expect(await count(f, "SELECT count(*) AS n FROM webhook_events WHERE event_id = 'evt_h3_future'")).toBe(
      0,
    );
  });

  it('several v1 signatures: one valid among garbage is accepted once; replay answers duplicate', async () => {
    const paid = await payThroughEngine(f, f.agentKey, {
      invoice: 'INV-H3-MULTI',
      amountMinor: 12_00,
      method: 'ach',
    });
    const payload = stripeEventFor(
      'payment_intent.succeeded.json',
      'evt_h3_multi',
      paid.payment_id,
      paid.gateway_reference!,
    );
    const t = Math.floor(Date.now() / 1000);
    const header = `t=${t},v1=${'0'.repeat(64)},v1=${v1(payload, t)},v0=${'f'.repeat(64)}`;
    const first = await postStripe(s, payload, header);
    expect(first.status).toBe(200);
    expect(JSON.parse(first.text).outcome).toBe('applied');
    const again = await postStripe(s, payload, header);
    expect(JSON.parse(again.text).outcome).toBe('duplicate');
    // Only garbage signatures (or v1 signed with another secret): refused.
    const other = await postStripe(s, payload, `t=${t},v1=${v1(payload, t, 'whsec_other')}`);
    expect(other.status).toBe(400);
  });

  it('a body with a valid signature but under another content type still verifies (raw bytes, any type)', async () => {
    const paid = await payThroughEngine(f, f.agentKey, {
      invoice: 'INV-H3-CT',
      amountMinor: 13_00,
      method: 'ach',
    });
    const payload = stripeEventFor(
      'payment_intent.succeeded.json',
      'evt_h3_ct',
      paid.payment_id,
      paid.gateway_reference!,
    );
    const r = await postStripe(s, payload, signStripeWebhookForTest(payload, STRIPE_SECRET), 'text/plain');
    expect(r.status).toBe(200);
    // Signed but not JSON: refused as unverified, not a 500.
    const junk = 'not json at all {';
    const j = await postStripe(s, junk, signStripeWebhookForTest(junk, STRIPE_SECRET));
    expect(j.status).toBe(400);
  });

  it('a signed event whose free text holds a NUL character is stored and applied, not a 500 forever', async () => {
    const paid = await payThroughEngine(f, f.agentKey, {
      invoice: 'INV-NUL-1',
      amountMinor: 20_00,
      method: 'ach',
    });
    const event = JSON.parse(
      stripeEventFor('payment_intent.succeeded.json', 'evt_nul_1', paid.payment_id, paid.gateway_reference!),
    );
    event.data.object.description = 'paid\u0000by someone';
    const payload = JSON.stringify(event);
    const r = await postStripe(s, payload, signStripeWebhookForTest(payload, STRIPE_SECRET));
    expect(r.status).toBe(200);
    expect(
      await f.t.db.withSystem((c) => c.query("SELECT 1 FROM webhook_events WHERE event_id = 'evt_nul_1'")),
    ).toMatchObject({ rowCount: 1 });
  });

  it('a webhook body over the 1 MB limit is answered 413, not 500 (a 500 makes the provider retry forever)', async () => {
    const huge = Buffer.alloc(1024 * 1024 + 10, 0x61);
    const r = await postStripe(s, huge, 't=1,v1=00');
    expect(r.status).toBe(413);
    const p = await fetch(`${s.url}/webhooks/paypal`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: huge,
    });
    expect(p.status).toBe(413);
  });

  it('webhook routes match as Express did (any case, trailing slash, query, absolute form); other methods fall to the app', async () => {
    const before = await count(f, 'SELECT count(*) AS n FROM webhook_events');
    const paid = await payThroughEngine(f, f.agentKey, {
      invoice: 'INV-ROUTE-1',
      amountMinor: 31_00,
      method: 'ach',
    });
    const payload = stripeEventFor(
      'payment_intent.succeeded.json',
      'evt_route_1',
      paid.payment_id,
      paid.gateway_reference!,
    );
    for (const route of ['/Webhooks/STRIPE/', '/webhooks/stripe?attempt=2']) {
      const r = await fetch(`${s.url}${route}`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'stripe-signature': signStripeWebhookForTest(payload, STRIPE_SECRET),
        },
        body: payload,
      });
      expect(r.status).toBe(200);
      expect(r.headers.get('content-type')).toBe('application/json; charset=utf-8');
      expect(await r.json()).toMatchObject({ received: true });
    }
    // A forward proxy's absolute-form request line reaches the same route.
    const absolute = await new Promise<number>((resolve, reject) => {
      const req = http.request(
        { host: '127.0.0.1', port: new URL(s.url).port, method: 'POST', path: `${s.url}/webhooks/stripe` },
        (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        },
      );
      req.on('error', reject);
      req.end('{}');
    });
    expect(absolute).toBe(400); // reached the route: refused as unsigned, not a 404 page
    expect(await count(f, 'SELECT count(*) AS n FROM webhook_events')).toBe(before + 1);
    // Not a POST, or not exactly the route: the app's 404, not a webhook answer.
    for (const [method, route] of [
      ['GET', '/webhooks/stripe'],
      ['PUT', '/webhooks/paypal'],
      ['POST', '/webhooks/stripe/x'],
      ['POST', '/webhooks/square'],
    ] as const) {
      const r = await fetch(`${s.url}${route}`, { method, body: method === 'GET' ? null : '{}' });
      expect(r.status, `${method} ${route}`).toBe(404);
      expect(await r.text()).not.toContain('webhook_not_verified');
    }
  });

  it('a webhook body the parser cannot read (unknown content encoding) is a 4xx JSON answer, nothing stored', async () => {
    const before = await count(f, 'SELECT count(*) AS n FROM webhook_events');
    const r = await fetch(`${s.url}/webhooks/stripe`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'content-encoding': 'x-unknown',
        'stripe-signature': 't=1,v1=00',
      },
      body: '{}',
    });
    expect(r.status).toBe(415);
    expect(await r.json()).toEqual({ error: 'bad_request', message: 'the request body could not be read' });
    expect(await count(f, 'SELECT count(*) AS n FROM webhook_events')).toBe(before);
  });

  it('a webhook request line carrying a fragment (/webhooks/stripe#…) reaches the webhook route, as under Express', async () => {
    const paid = await payThroughEngine(f, f.agentKey, {
      invoice: 'INV-ROUTE-FRAG',
      amountMinor: 32_00,
      method: 'ach',
    });
    const payload = stripeEventFor(
      'payment_intent.succeeded.json',
      'evt_route_frag',
      paid.payment_id,
      paid.gateway_reference!,
    );
    // Express (parseurl) routed on the path without the fragment; a raw client can send one.
    const answer = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = http.request(
        {
          host: '127.0.0.1',
          port: new URL(s.url).port,
          method: 'POST',
          path: '/webhooks/stripe#delivery-1',
          headers: {
            'content-type': 'application/json',
            'stripe-signature': signStripeWebhookForTest(payload, STRIPE_SECRET),
          },
        },
        (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => (body += c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        },
      );
      req.on('error', reject);
      req.end(payload);
    });
    expect(answer.status, answer.body.slice(0, 200)).toBe(200);
    expect(JSON.parse(answer.body)).toMatchObject({ received: true, outcome: 'applied' });
    expect(await count(f, "SELECT count(*) AS n FROM webhook_events WHERE event_id = 'evt_route_frag'")).toBe(
      1,
    );
  });

  it("a webhook body whose gzip encoding is corrupt is a 4xx JSON answer (the sender's fault), not a 500 retried forever", async () => {
    const before = await count(f, 'SELECT count(*) AS n FROM webhook_events');
    const paid = await payThroughEngine(f, f.agentKey, {
      invoice: 'INV-GZIP-BAD',
      amountMinor: 33_00,
      method: 'ach',
    });
    const payload = stripeEventFor(
      'payment_intent.succeeded.json',
      'evt_gzip_bad',
      paid.payment_id,
      paid.gateway_reference!,
    );
    // The signed event gzipped, then cut short: zlib cannot inflate it (unexpected end of file).
    const truncated = gzipSync(payload).subarray(0, 40);
    const r = await fetch(`${s.url}/webhooks/stripe`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'content-encoding': 'gzip',
        'stripe-signature': signStripeWebhookForTest(payload, STRIPE_SECRET),
      },
      body: truncated,
    });
    expect(r.status).toBe(400);
    expect(await r.json()).toEqual({ error: 'bad_request', message: 'the request body could not be read' });
    expect(await count(f, 'SELECT count(*) AS n FROM webhook_events')).toBe(before);
  });

  it('PayPal: a certificate URL off PayPal hosts, an old transmission time, a non-date time: 400, nothing fetched or stored', async () => {
    const before = await count(f, "SELECT count(*) AS n FROM webhook_events WHERE provider = 'paypal'");
    const body = JSON.stringify({ id: 'WH-H3-1', event_type: 'PAYMENT.CAPTURE.COMPLETED', resource: {} });
    const base = {
      'content-type': 'application/json',
      'paypal-transmission-id': 'abc',
      'paypal-transmission-sig': Buffer.from('x').toString('base64'),
      'paypal-auth-algo': 'SHA256withRSA',
    };
    const cases: Record<string, string>[] = [
      {
        'paypal-transmission-time': new Date().toISOString(),
        'paypal-cert-url': 'https://evil.example/v1/notifications/certs/CERT-1',
      },
      {
        'paypal-transmission-time': new Date().toISOString(),
        'paypal-cert-url': 'https://api.paypal.com.evil.example/v1/notifications/certs/CERT-1',
      },
      {
        'paypal-transmission-time': new Date().toISOString(),
        'paypal-cert-url': 'https://api.paypal.com@evil.example/v1/notifications/certs/x',
      },
      {
        'paypal-transmission-time': new Date().toISOString(),
        'paypal-cert-url': 'http://api.paypal.com/v1/notifications/certs/x',
      },
      {
        'paypal-transmission-time': new Date().toISOString(),
        'paypal-cert-url': 'https://api.paypal.com:8443/v1/notifications/certs/x',
      },
      {
        'paypal-transmission-time': new Date().toISOString(),
        'paypal-cert-url': 'https://api.paypal.com/v1/oauth2/token',
      },
      {
        'paypal-transmission-time': new Date(Date.now() - 600_000).toISOString(),
        'paypal-cert-url': `${f.sandbox.paypal.certUrl}`,
      },
      { 'paypal-transmission-time': 'yesterday', 'paypal-cert-url': `${f.sandbox.paypal.certUrl}` },
    ];
    for (const c of cases) {
      const r = await fetch(`${s.url}/webhooks/paypal`, { method: 'POST', headers: { ...base, ...c }, body });
      expect(r.status, JSON.stringify(c)).toBe(400);
    }
    // No webhook id is configured on this sidecar: even a perfect signature is refused (fail closed).
    expect(await count(f, "SELECT count(*) AS n FROM webhook_events WHERE provider = 'paypal'")).toBe(before);
  });

  it('/healthz: a bad challenge gets no proof; a good one gets the HMAC for this port', async () => {
    for (const bad of ['zz', 'a'.repeat(31), 'A'.repeat(40), 'a'.repeat(129)]) {
      const r = await fetch(`${s.url}/healthz?challenge=${bad}`);
      expect(await r.json()).toEqual({ ok: true });
    }
    const arr = await fetch(`${s.url}/healthz?challenge=${'a'.repeat(32)}&challenge=${'b'.repeat(32)}`);
    expect(await arr.json()).toEqual({ ok: true });
    const challenge = 'ab'.repeat(16);
    const good = (await (await fetch(`${s.url}/healthz?challenge=${challenge}`)).json()) as { proof: string };
    const port = Number(new URL(s.url).port);
    expect(good.proof).toBe(healthProof(PROOF_SECRET, port, challenge));
  });

  it('/metrics leaks no tenant, key, token or payment identifiers, and unverified junk adds no label values', async () => {
    for (let i = 0; i < 5; i++) await postStripe(s, `{"type":"evil_${i}"}`, `t=1,v1=${i}`);
    const text = await (await fetch(`${s.url}/metrics`)).text();
    expect(text).toContain('paygate_payments');
    for (const secret of [
      f.tenant.id,
      f.agentKeySecret,
      f.admin.token,
      f.approver.token,
      STRIPE_SECRET,
      'h3-sidecar',
      'INV-H3',
    ]) {
      expect(text).not.toContain(secret);
    }
    expect(text).not.toMatch(/evil_/);
    expect(text).toMatch(
      /paygate_webhook_events_total\{provider="stripe",type="unverified",outcome="rejected"\} \d+/,
    );
  });

  it('open redirects via next: only /approvals paths are followed', async () => {
    const evil = [
      '//evil.example',
      'https://evil.example/approvals',
      '/approvals/../../evil',
      '/\\evil.example',
      '/approvals\nLocation: //evil',
      '/approvalsX',
      `/approvals/${'0'.repeat(8)}-0000-0000-0000-000000000000/approve`,
    ];
    for (const next of evil) {
      const page = new PageClient(s.url);
      const r = await page.login(f.approver.token, next);
      expect(r.response.status).toBe(303);
      expect(r.response.headers.get('location')).toBe('/approvals');
      // And already logged in, GET /login?next= too.
      const again = await page.get(`/login?next=${encodeURIComponent(next)}`);
      expect(again.response.headers.get('location')).toBe('/approvals');
    }
  });

  it('login CSRF: a POST /login without the pre-login cookie, or with JSON, does not log in', async () => {
    const r = await fetch(`${secure.url}/login`, {
      method: 'POST',
      redirect: 'manual',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ token: f.approver.token, _csrf: 'x' }).toString(),
    });
    expect(r.status).toBe(403);
    expect(r.headers.getSetCookie().some((c) => c.includes('paygate_session='))).toBe(false);
    const j = await fetch(`${secure.url}/login`, {
      method: 'POST',
      redirect: 'manual',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ token: f.approver.token }),
    });
    expect(j.status).toBe(403);
  });

  it('login rate limit: after the budget of wrong tokens even the right one is refused, X-Forwarded-For does not reset it', async () => {
    const page = new PageClient(s.url);
    for (let i = 0; i < 3; i++) {
      const form = await page.get('/login');
      const r = await page.post('/login', { _csrf: PageClient.csrf(form.text), token: `pgu_wrong_${i}` });
      expect(r.response.status).toBe(401);
    }
    const form = await page.get('/login');
    const csrf = PageClient.csrf(form.text);
    const spoofed = await fetch(`${s.url}/login`, {
      method: 'POST',
      redirect: 'manual',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        'x-forwarded-for': '203.0.113.9',
        cookie: [...page.cookies].map(([k, v]) => `${k}=${v}`).join('; '),
      },
      body: new URLSearchParams({ _csrf: csrf, token: f.approver.token }).toString(),
    });
    expect(spoofed.status).toBe(429);
  });

  it('over HTTPS (secureCookies): every cookie set or cleared carries Secure and the __Host- rules', async () => {
    const page = new PageClient(secure.url);
    const form = await page.get('/login');
    const loginCookies = form.response.headers.getSetCookie();
    expect(loginCookies.length).toBeGreaterThan(0);
    const r = await page.post('/login', { _csrf: PageClient.csrf(form.text), token: f.approver.token });
    expect(r.response.status).toBe(303);
    const set = r.response.headers.getSetCookie();
    const session = set.find((c) => c.startsWith('__Host-paygate_session='));
    expect(session).toMatch(/; Secure/i);
    expect(session).toMatch(/HttpOnly/i);
    expect(session).toMatch(/SameSite=Strict/i);
    // The clearing of the pre-login cookie: a browser ignores a __Host- cookie without Secure.
    const cleared = set.find((c) => c.startsWith('__Host-paygate_login='));
    expect(cleared, set.join('\n')).toMatch(/; Secure/i);
  });

  it('over HTTPS (secureCookies): logout clears __Host-paygate_session with Secure (else the browser keeps it)', async () => {
    const page = new PageClient(secure.url);
    await page.login(f.approver.token);
    const list = await page.get('/approvals');
    const out = await page.post('/logout', { _csrf: PageClient.csrf(list.text) });
    const outCookies = out.response.headers.getSetCookie();
    const clearedSession = outCookies.find((c) => c.startsWith('__Host-paygate_session='));
    expect(clearedSession, outCookies.join('\n')).toMatch(/; Secure/i);
  });

  it('a form body over the 16 kB limit is 413, not a 500 page', async () => {
    const r = await fetch(`${s.url}/login`, {
      method: 'POST',
      redirect: 'manual',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: `token=${'a'.repeat(20_000)}`,
    });
    expect(r.status).toBe(413);
  });
});
