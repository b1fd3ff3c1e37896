/**
 * The approval pages over real HTTP: login with a personal access token, the session cookie's
 * attributes, CSRF on every change, rate-limited login, helmet's headers, tenant isolation, an
 * approval that needs the human's own token typed again (a stolen cookie cannot approve), an
 * approval token that is shown once and then pays, and revoking an approval the agent has not used.
 */
import { createHash, createHmac } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { analyzeAlert } from '../../src/analysis/index.js';
import { createDb } from '../../src/db/pool.js';
import { changeUserAccess } from '../../src/directory/users.js';
import { type ApprovalRequired, type PaymentConfirmation, payInvoice } from '../../src/payments/pay.js';
import { createSidecarApp } from '../../src/sidecar/app.js';
import { escapeHtml } from '../../src/sidecar/html.js';
import { createFixture, type Fixture } from '../support/fixture.js';
import { PageClient as Client, count, type RunningSidecar, startSidecar } from './support.js';

describe('approval pages', () => {
  let f: Fixture;
  let other: Fixture;
  let s: RunningSidecar;
  const caller = () => ({ agentKey: f.agentKey });
  const input = { invoice: 'INV-PG-1', amount: '1234.56', currency: 'USD', method: 'stripe' };
  let ask: ApprovalRequired;

  beforeAll(async () => {
    f = await createFixture({ slug: 'pages' });
    other = await createFixture({ slug: 'elsewhere', t: f.t, sandbox: f.sandbox });
    for (const x of [f, other]) {
      await x.addMethod({
        rail: 'stripe',
        token: 'pm_card_visa',
        label: 'Corporate Visa',
        brand: 'visa',
        last4: '4242',
      });
    }
    await f.addInvoice('INV-PG-1', 1234_56);
    ask = (await payInvoice(f.deps, caller(), input)) as ApprovalRequired;
    s = await startSidecar(f, {}, { loginRateLimit: { limit: 50, windowMs: 60_000 } });
  });
  afterAll(async () => {
    await s.close();
    await other.close();
    await f.close();
  });

  it('sends a visitor without a session to the login page, keeping where they were going', async () => {
    const c = new Client(s.url);
    const { response } = await c.get(`/approvals/${ask.approval_id}`);
    expect(response.status).toBe(303);
    expect(response.headers.get('location')).toBe(
      `/login?next=${encodeURIComponent(`/approvals/${ask.approval_id}`)}`,
    );
  });

  it("serves helmet's headers and a CSP without inline scripts; the page reads on a phone", async () => {
    const { response, text } = await new Client(s.url).get('/login');
    const csp = response.headers.get('content-security-policy')!;
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("style-src 'self'");
    expect(csp).toContain("frame-ancestors 'none'");
    expect(csp).not.toContain('unsafe-inline');
    expect(response.headers.get('x-content-type-options')).toBe('nosniff');
    expect(response.headers.get('x-frame-options')).toBe('SAMEORIGIN');
    expect(response.headers.get('cache-control')).toBe('no-store');
    expect(text).toContain('<meta name="viewport" content="width=device-width, initial-scale=1">');
    expect(text).not.toMatch(/<script>|<style>|\sstyle="|\son[a-z]+="/);
  });

  it('refuses a login without the form token, and a wrong personal access token', async () => {
    const c = new Client(s.url);
    await c.get('/login');
    expect((await c.post('/login', { token: f.approver.token })).response.status).toBe(403);
    const wrong = await c.login('pgu_not_a_real_token_at_all_00000000000000000000');
    expect(wrong.response.status).toBe(401);
    expect(wrong.text).toContain('That token was not accepted');
    expect(c.cookies.has('paygate_session')).toBe(false);
  });

  it('logs in with a personal access token: httpOnly SameSite=Strict cookie, only its hash stored', async () => {
    const c = new Client(s.url);
    const form = await c.get('/login');
    const { response } = await c.post('/login', {
      _csrf: Client.csrf(form.text),
      token: f.approver.token,
      next: '/approvals',
    });
    expect(response.status).toBe(303);
    expect(response.headers.get('location')).toBe('/approvals');
    const cookie = response.headers.getSetCookie().find((l) => l.startsWith('paygate_session='))!;
    expect(cookie).toMatch(/HttpOnly/);
    expect(cookie).toMatch(/SameSite=Strict/);
    expect(cookie).not.toMatch(/Secure/); // plain http on loopback
    const secret = c.cookies.get('paygate_session')!;
    const hash = createHash('sha256').update(secret).digest();
    expect(await count(f, 'SELECT count(*) AS n FROM sidecar_sessions WHERE secret_hash = $1', [hash])).toBe(
      1,
    );
    expect(
      await count(
        f,
        "SELECT count(*) AS n FROM sidecar_sessions WHERE encode(secret_hash, 'escape') LIKE $1",
        [`%${secret}%`],
      ),
    ).toBe(0);
  });

  it('shows exactly what will happen, then approves with CSRF and shows a token once that pays', async () => {
    const c = new Client(s.url);
    await c.login(f.approver.token);
    const list = await c.get('/approvals');
    expect(list.text).toContain('1234.56 USD');
    expect(list.text).toContain(`/approvals/${ask.approval_id}`);

    const page = await c.get(`/approvals/${ask.approval_id}`);
    for (const fact of [
      '1234.56',
      'USD',
      'Acme Supplies',
      'INV-PG-1',
      'Card (Stripe)',
      'Corporate Visa, ending in 4242',
      'Agent &quot;claude&quot;',
      'nobody has approved yet',
      'Expires',
    ]) {
      expect(page.text).toContain(fact);
    }
    // Without the form token nothing is decided.
    expect((await c.post(`/approvals/${ask.approval_id}/approve`, {})).response.status).toBe(403);
    expect((await c.post(`/approvals/${ask.approval_id}/approve`, { _csrf: 'forged' })).response.status).toBe(
      403,
    );
    expect(
      await count(f, "SELECT count(*) AS n FROM approvals WHERE id = $1 AND status = 'pending'", [
        ask.approval_id,
      ]),
    ).toBe(1);

    expect(page.text).toContain(
      'paygate asks for your token again for every approval so that nobody else on this computer can approve in your name',
    );
    const approved = await c.post(`/approvals/${ask.approval_id}/approve`, {
      _csrf: Client.csrf(page.text),
      token: f.approver.token,
    });
    expect(approved.response.status).toBe(200);
    expect(approved.response.headers.get('cache-control')).toBe('no-store');
    const token = /<code id="approval-token">(apt_[A-Za-z0-9_-]+)<\/code>/.exec(approved.text)?.[1];
    expect(token).toBeDefined();
    expect(approved.text).toContain('shown only this once');
    expect(approved.text).toContain('data-copy="approval-token"');

    // Shown once: the page for the approval no longer has it, and the token pays the invoice once.
    const after = await c.get(`/approvals/${ask.approval_id}`);
    expect(after.text).not.toContain(token!);
    // Approved but not used yet: the one thing left to do is take it back.
    expect(after.text).toContain('Revoke approval');
    expect(after.text).not.toContain('approve-token');
    const done = (await payInvoice(f.deps, caller(), {
      ...input,
      approval_token: token,
    })) as PaymentConfirmation;
    expect(done).toMatchObject({ success: true, status: 'paid', approved_by: 'jdoe@example.com' });

    const metrics = await (await fetch(`${s.url}/metrics`)).text();
    expect(metrics).toMatch(/paygate_approval_decision_seconds_count\{decision="approve"\} 1/);
  });

  it('approving needs the logged-in human’s own personal access token; a wrong one approves nothing and is audited', async () => {
    await f.addInvoice('INV-PG-STEP', 20_00);
    const request = (await payInvoice(f.deps, caller(), {
      ...input,
      invoice: 'INV-PG-STEP',
      amount: '20.00',
    })) as ApprovalRequired;
    const c = new Client(s.url);
    await c.login(f.approver.token);
    const page = await c.get(`/approvals/${request.approval_id}`);
    const csrf = Client.csrf(page.text);
    // No token, someone else's valid token (the admin's), a made-up one: all refused the same way.
    for (const token of [undefined, f.admin.token, 'pgu_made_up_000000000000000000000000000000000000']) {
      const refused = await c.post(`/approvals/${request.approval_id}/approve`, {
        _csrf: csrf,
        ...((token ? { token } : {}) as Record<string, string>),
      });
      expect(refused.response.status).toBe(401);
      expect(refused.text).toContain('Nothing was approved: that is not your personal access token');
      expect(refused.text).not.toMatch(/apt_[A-Za-z0-9_-]{43}/);
    }
    expect(
      await count(f, "SELECT count(*) AS n FROM approvals WHERE id = $1 AND status = 'pending'", [
        request.approval_id,
      ]),
    ).toBe(1);
    expect(
      await count(f, 'SELECT count(*) AS n FROM approval_decisions WHERE approval_id = $1', [
        request.approval_id,
      ]),
    ).toBe(0);
    expect(
      await count(
        f,
        "SELECT count(*) AS n FROM audit_log WHERE action = 'approval.decision_refused' AND subject_id = $1 AND actor_id = 'jdoe@example.com' AND content LIKE '%step_up_token_mismatch%'",
        [request.approval_id],
      ),
    ).toBe(3);
    // The right token still works afterwards.
    const approved = await c.post(`/approvals/${request.approval_id}/approve`, {
      _csrf: csrf,
      token: f.approver.token,
    });
    expect(approved.response.status).toBe(200);
    expect(approved.text).toMatch(/<code id="approval-token">apt_[A-Za-z0-9_-]{43}<\/code>/);
  });

  it('a stolen session cookie with the CSRF token computed from it cannot approve (review: cookie-port)', async () => {
    await f.addInvoice('INV-PG-STOLEN', 30_00);
    const call = { ...input, invoice: 'INV-PG-STOLEN', amount: '30.00' };
    const request = (await payInvoice(f.deps, caller(), call)) as ApprovalRequired;
    // The human logs in; an agent-run server on another loopback port receives the cookie (browsers
    // do not keep cookies apart by port). From here on only the cookie value is used.
    const human = new Client(s.url);
    await human.login(f.approver.token);
    const secret = human.cookies.get('paygate_session')!;
    const csrf = createHmac('sha256', secret).update('paygate-csrf').digest('base64url');
    const agent = async (form: Record<string, string>) => {
      const res = await fetch(`${s.url}/approvals/${request.approval_id}/approve`, {
        method: 'POST',
        redirect: 'manual',
        headers: {
          cookie: `paygate_session=${secret}`,
          'content-type': 'application/x-www-form-urlencoded',
        },
        body: new URLSearchParams({ _csrf: csrf, ...form }).toString(),
      });
      return { status: res.status, text: await res.text() };
    };
    // The agent holds its own credential, the agent key, and no human's personal access token.
    const forms: Record<string, string>[] = [{}, { token: f.agentKeySecret }, { token: '' }];
    for (const form of forms) {
      const res = await agent(form);
      expect(res.status).toBe(401);
      expect(res.text).not.toMatch(/apt_[A-Za-z0-9_-]{43}/);
    }
    expect(
      await count(f, "SELECT count(*) AS n FROM approvals WHERE id = $1 AND status = 'pending'", [
        request.approval_id,
      ]),
    ).toBe(1);
    await expect(payInvoice(f.deps, caller(), call)).resolves.toMatchObject({
      status: 'approval_required',
      approval_id: request.approval_id,
    });
  });

  it('a wrong token at the approval step counts against the same limit as logins', async () => {
    const limited = await startSidecar(
      f,
      {},
      { loginRateLimit: { limit: 3, windowMs: 60_000 }, instrumentGateways: false },
    );
    try {
      await f.addInvoice('INV-PG-GUESS', 40_00);
      const request = (await payInvoice(f.deps, caller(), {
        ...input,
        invoice: 'INV-PG-GUESS',
        amount: '40.00',
      })) as ApprovalRequired;
      const c = new Client(limited.url);
      // A successful login gives its attempt back.
      expect((await c.login(f.approver.token)).response.status).toBe(303);
      const page = await c.get(`/approvals/${request.approval_id}`);
      const guess = () =>
        c.post(`/approvals/${request.approval_id}/approve`, {
          _csrf: Client.csrf(page.text),
          token: 'pgu_guess_000000000000000000000000000000000000000',
        });
      const statuses = [];
      for (let i = 0; i < 4; i++) statuses.push((await guess()).response.status);
      expect(statuses).toEqual([401, 401, 401, 429]);
      // The budget is shared: a login from the same address now waits too, and so does the right token.
      expect((await new Client(limited.url).login(f.approver.token)).response.status).toBe(429);
      const right = await c.post(`/approvals/${request.approval_id}/approve`, {
        _csrf: Client.csrf(page.text),
        token: f.approver.token,
      });
      expect(right.response.status).toBe(429);
      expect(
        await count(f, "SELECT count(*) AS n FROM approvals WHERE id = $1 AND status = 'pending'", [
          request.approval_id,
        ]),
      ).toBe(1);
    } finally {
      await limited.close();
    }
  });

  it('revokes an approval the agent has not used: the token stops working and nothing moves', async () => {
    await f.addInvoice('INV-PG-REVOKE', 60_00);
    const call = { ...input, invoice: 'INV-PG-REVOKE', amount: '60.00' };
    const request = (await payInvoice(f.deps, caller(), call)) as ApprovalRequired;
    const c = new Client(s.url);
    await c.login(f.approver.token);
    const page = await c.get(`/approvals/${request.approval_id}`);
    const approved = await c.post(`/approvals/${request.approval_id}/approve`, {
      _csrf: Client.csrf(page.text),
      token: f.approver.token,
    });
    const token = /<code id="approval-token">(apt_[A-Za-z0-9_-]+)<\/code>/.exec(approved.text)![1]!;
    expect(approved.text).toContain(`href="/approvals/${request.approval_id}">revoke this approval`);

    // The approver who approved (or any approver or admin) sees a Revoke button while the token is unused.
    const after = await c.get(`/approvals/${request.approval_id}`);
    expect(after.text).toContain('Revoke approval');
    expect(after.text).toContain('the code stops working and no money moves');
    const revoked = await c.post(`/approvals/${request.approval_id}/reject`, {
      _csrf: Client.csrf(after.text),
      reason: 'wrong bank details on the invoice',
    });
    expect(revoked.response.status).toBe(303);
    expect(revoked.response.headers.get('location')).toBe('/approvals?done=revoked');
    expect((await c.get('/approvals?done=revoked')).text).toContain('The approval was revoked');
    expect(
      await count(
        f,
        "SELECT count(*) AS n FROM approvals WHERE id = $1 AND status = 'rejected' AND token_hash IS NULL",
        [request.approval_id],
      ),
    ).toBe(1);
    expect(
      await count(
        f,
        "SELECT count(*) AS n FROM audit_log WHERE action = 'approval.revoked' AND subject_id = $1 AND actor_id = 'jdoe@example.com'",
        [request.approval_id],
      ),
    ).toBe(1);

    const charges = f.sandbox.ledger.charges().length;
    await expect(payInvoice(f.deps, caller(), { ...call, approval_token: token })).rejects.toMatchObject({
      code: 'invalid_approval_token',
    });
    expect(f.sandbox.ledger.charges()).toHaveLength(charges);
    expect(
      await count(
        f,
        "SELECT count(*) AS n FROM payments p JOIN invoices i ON i.id = p.invoice_id WHERE i.number = 'INV-PG-REVOKE'",
      ),
    ).toBe(0);
    // Nothing left to revoke: the page says so and a second revoke is refused.
    const gone = await c.get(`/approvals/${request.approval_id}`);
    expect(gone.text).not.toContain('Revoke approval');
    expect(
      (await c.post(`/approvals/${request.approval_id}/reject`, { _csrf: Client.csrf(gone.text) })).response
        .status,
    ).toBe(409);
  });

  it('an approval whose token was used cannot be revoked', async () => {
    await f.addInvoice('INV-PG-USED', 70_00);
    const call = { ...input, invoice: 'INV-PG-USED', amount: '70.00' };
    const request = (await payInvoice(f.deps, caller(), call)) as ApprovalRequired;
    const token = await f.approveAs(f.approver, request.approval_id);
    await payInvoice(f.deps, caller(), { ...call, approval_token: token });
    const c = new Client(s.url);
    await c.login(f.admin.token);
    const page = await c.get(`/approvals/${request.approval_id}`);
    expect(page.text).not.toContain('Revoke approval');
    expect(page.text).toContain('nothing left to decide');
    const refused = await c.post(`/approvals/${request.approval_id}/reject`, {
      _csrf: Client.csrf(page.text),
    });
    expect(refused.response.status).toBe(409);
    expect(
      await count(f, "SELECT count(*) AS n FROM approvals WHERE id = $1 AND status = 'consumed'", [
        request.approval_id,
      ]),
    ).toBe(1);
  });

  it('rejects with CSRF, closing the request', async () => {
    await f.addInvoice('INV-PG-2', 50_00);
    const call = { ...input, invoice: 'INV-PG-2', amount: '50.00' };
    const request = (await payInvoice(f.deps, caller(), call)) as ApprovalRequired;
    const c = new Client(s.url);
    await c.login(f.approver.token);
    const page = await c.get(`/approvals/${request.approval_id}`);
    const rejected = await c.post(`/approvals/${request.approval_id}/reject`, {
      _csrf: Client.csrf(page.text),
    });
    expect(rejected.response.status).toBe(303);
    expect(rejected.response.headers.get('location')).toBe('/approvals?done=rejected');
    expect(
      await count(f, "SELECT count(*) AS n FROM approvals WHERE id = $1 AND status = 'rejected'", [
        request.approval_id,
      ]),
    ).toBe(1);
  });

  it("never shows or decides another tenant's approval", async () => {
    await other.addInvoice('INV-OTHER-1', 10_00);
    const theirs = (await payInvoice(
      other.deps,
      { agentKey: other.agentKey },
      { ...input, invoice: 'INV-OTHER-1', amount: '10.00' },
    )) as ApprovalRequired;
    const c = new Client(s.url);
    await c.login(f.admin.token);
    expect((await c.get(`/approvals/${theirs.approval_id}`)).response.status).toBe(404);
    const list = await c.get('/approvals');
    const page = await c.post(`/approvals/${theirs.approval_id}/approve`, {
      _csrf: Client.csrf(list.text),
      token: f.admin.token,
    });
    expect(page.response.status).toBe(404);
    expect(
      await count(f, "SELECT count(*) AS n FROM approvals WHERE id = $1 AND status = 'pending'", [
        theirs.approval_id,
      ]),
    ).toBe(1);
  });

  it('an approval above the approver’s limit is refused on the page with the reason', async () => {
    await f.addInvoice('INV-PG-3', 9_000_00);
    const request = (await payInvoice(f.deps, caller(), {
      ...input,
      invoice: 'INV-PG-3',
      amount: '9000.00',
    })) as ApprovalRequired;
    const c = new Client(s.url);
    await c.login(f.approver.token);
    const page = await c.get(`/approvals/${request.approval_id}`);
    const refused = await c.post(`/approvals/${request.approval_id}/approve`, {
      _csrf: Client.csrf(page.text),
      token: f.approver.token,
    });
    expect(refused.response.status).toBe(409);
    expect(refused.text).toContain('role="alert"');
    expect(refused.text).not.toContain('apt_');
  });

  it("shows the last failed attempt's analysis on the retry's approval page", async () => {
    // A card that declines: the payment fails, an alert is raised, and the analysis (here the
    // fallback, as without ANTHROPIC_API_KEY) is stored on it after commit.
    await f.addMethod({
      rail: 'stripe',
      token: 'pm_card_visa_chargeDeclined',
      label: 'Old Visa',
      last4: '0002',
    });
    await f.addInvoice('INV-PG-4', 75_00);
    const call = { ...input, invoice: 'INV-PG-4', amount: '75.00' };
    const first = (await payInvoice(f.deps, caller(), call)) as ApprovalRequired;
    const token = await f.approveAs(f.admin, first.approval_id);
    await expect(payInvoice(f.deps, caller(), { ...call, approval_token: token })).rejects.toMatchObject({
      code: 'declined',
    });
    const { rows } = await f.t.db.withTenant(f.tenant.id, (c) =>
      c.query<{ id: string; message: string }>(
        "SELECT a.id, a.message FROM alerts a JOIN payments p ON p.id = a.payment_id JOIN invoices i ON i.id = p.invoice_id WHERE i.number = 'INV-PG-4'",
      ),
    );
    const analyzed = await analyzeAlert(
      f.t.db,
      { anthropic: { model: 'unused-without-a-key' } },
      { tenantId: f.tenant.id, alertId: rows[0]!.id },
      { kind: 'payment', code: 'declined', message: rows[0]!.message },
    );
    expect(analyzed.status).toBe('fallback');
    const analysis = (analyzed as { analysis: { summary: string; next_step: string } }).analysis;

    const retry = (await payInvoice(f.deps, caller(), call)) as ApprovalRequired;
    const c = new Client(s.url);
    await c.login(f.approver.token);
    const page = await c.get(`/approvals/${retry.approval_id}`);
    expect(page.text).toContain('The last attempt to pay this invoice failed');
    expect(page.text).toContain(escapeHtml(analysis.summary));
    expect(page.text).toContain(escapeHtml(analysis.next_step));
  });

  it('counts only approvals that still stand: a first approver demoted since is named, not counted', async () => {
    const dual = await createFixture({ slug: 'pages-dual', t: f.t, sandbox: f.sandbox, dualAbove: 100_00 });
    const site = await startSidecar(dual, {}, { loginRateLimit: { limit: 50, windowMs: 60_000 } });
    try {
      await dual.addMethod({ rail: 'stripe', token: 'pm_card_visa', brand: 'visa', last4: '4242' });
      await dual.addInvoice('INV-PG-DUAL', 500_00);
      const request = (await payInvoice(
        dual.deps,
        { agentKey: dual.agentKey },
        { invoice: 'INV-PG-DUAL', amount: '500.00', currency: 'USD', method: 'stripe' },
      )) as ApprovalRequired;
      expect(await dual.approveAs(dual.approver, request.approval_id)).toBeUndefined();
      const c = new Client(site.url);
      await c.login(dual.admin.token);
      expect((await c.get('/approvals')).text).toContain('1 of 2 approvals');
      expect((await c.get(`/approvals/${request.approval_id}`)).text).toContain(
        '1 of 2 needed: jdoe@example.com',
      );

      await changeUserAccess(dual.t.db, dual.tenant.id, dual.admin, dual.approver.email, { role: 'viewer' });
      expect((await c.get('/approvals')).text).toContain('0 of 2 approvals');
      const detail = (await c.get(`/approvals/${request.approval_id}`)).text;
      expect(detail).toContain('0 of 2 needed; no longer counted: jdoe@example.com is a viewer');
    } finally {
      await site.close();
      await dual.close();
    }
  });

  it('logout ends the session on the server: the old cookie no longer works', async () => {
    const c = new Client(s.url);
    await c.login(f.approver.token);
    const secret = c.cookies.get('paygate_session')!;
    const page = await c.get('/approvals');
    expect((await c.post('/logout', { _csrf: Client.csrf(page.text) })).response.status).toBe(303);
    const replay = new Client(s.url);
    replay.cookies.set('paygate_session', secret);
    expect((await replay.get('/approvals')).response.status).toBe(303);
  });

  it('rate-limits logins per address', async () => {
    const limited = await startSidecar(
      f,
      {},
      { loginRateLimit: { limit: 3, windowMs: 60_000 }, instrumentGateways: false },
    );
    try {
      const c = new Client(limited.url);
      const statuses = [];
      for (let i = 0; i < 5; i++)
        statuses.push((await c.login('pgu_guess_000000000000000000000000000000000000000')).response.status);
      expect(statuses).toEqual([401, 401, 401, 429, 429]);
      // Even the right token waits out the window.
      expect((await c.login(f.approver.token)).response.status).toBe(429);
    } finally {
      await limited.close();
    }
  });

  it('marks cookies Secure with the __Host- prefix when served over HTTPS', async () => {
    const secure = await startSidecar(f, {}, { secureCookies: true, instrumentGateways: false });
    try {
      const c = new Client(secure.url);
      const form = await c.get('/login');
      expect(form.response.headers.getSetCookie()[0]).toMatch(
        /^__Host-paygate_login=.*; Path=\/; .*HttpOnly; Secure; SameSite=Strict/,
      );
      const { response } = await c.post('/login', { _csrf: Client.csrf(form.text), token: f.approver.token });
      const cookie = response.headers.getSetCookie().find((l) => l.startsWith('__Host-paygate_session='))!;
      expect(cookie).toMatch(/HttpOnly/);
      expect(cookie).toMatch(/Secure/);
      expect(cookie).toMatch(/SameSite=Strict/);
    } finally {
      await secure.close();
    }
  });

  it('/healthz answers 200 with the database and 503 without it', async () => {
    expect(await (await fetch(`${s.url}/healthz`)).json()).toEqual({ ok: true });
    const unreachable = createDb('postgres://nobody@127.0.0.1:1/none');
    const app = createSidecarApp(
      { db: unreachable, deps: { ...f.deps, db: unreachable }, webhooks: {} },
      { instrumentGateways: false },
    );
    const http = await import('node:http');
    const server = http.createServer(app);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = server.address() as { port: number };
      const response = await fetch(`http://127.0.0.1:${port}/healthz`);
      expect(response.status).toBe(503);
      expect(await response.json()).toMatchObject({ ok: false });
    } finally {
      server.close();
      await unreachable.close();
    }
  });
});
