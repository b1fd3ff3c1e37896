/**
 * The approval pages over real HTTP: who may approve (role, the human the key acts
 * for, dual control, another tenant), what may be approved (expired, rejected, consumed, unknown or
 * malformed ids), and the step-up token.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { reject } from '../../src/approvals/approvals.js';
import type { AgentKey } from '../../src/directory/agent-keys.js';
import { addUser, type User } from '../../src/directory/users.js';
import { type ApprovalRequired, payInvoice } from '../../src/payments/pay.js';
import { createFixture, type Fixture } from '../support/fixture.js';
import { PageClient, type RunningSidecar, startSidecar } from './support.js';

/** A signed-in human on the pages, with the list page's CSRF token for decisions. */
class Browser extends PageClient {
  csrfToken = '';

  async signIn(token: string) {
    const r = await this.login(token);
    expect(r.response.status).toBe(303);
    const list = await this.get('/approvals');
    this.csrfToken = PageClient.csrf(list.text);
    return this;
  }

  approve(id: string, token: string) {
    return this.request('POST', `/approvals/${id}/approve`, { _csrf: this.csrfToken, token });
  }
  reject(id: string) {
    return this.request('POST', `/approvals/${id}/reject`, { _csrf: this.csrfToken });
  }
}

describe('approval pages', () => {
  let f: Fixture;
  let other: Fixture;
  let s: RunningSidecar;
  let viewer: User & { token: string };
  let owner: User & { token: string };
  let ownersAgent: AgentKey;
  let second: User & { token: string };
  let seq = 0;

  async function sql<T = Record<string, unknown>>(text: string, params: unknown[] = []): Promise<T[]> {
    const { rows } = await f.t.db.withSystem((c) => c.query(text, params));
    return rows as T[];
  }

  /** A fresh invoice and the agent's pending request to pay it. */
  async function request(amountMinor: number, agentKey: AgentKey = f.agentKey): Promise<string> {
    const number = `INV-P-${++seq}`;
    await f.addInvoice(number, amountMinor);
    const amount = (amountMinor / 100).toFixed(2);
    const ask = (await payInvoice(
      f.deps,
      { agentKey },
      { invoice: number, amount, currency: 'USD', method: 'stripe' },
    )) as ApprovalRequired;
    expect(ask.status).toBe('approval_required');
    return ask.approval_id;
  }

  const statusOf = async (id: string) =>
    (await sql<{ status: string }>('SELECT status FROM approvals WHERE id = $1', [id]))[0]!.status;

  beforeAll(async () => {
    f = await createFixture({ slug: 'pages', dualAbove: 1_000_00 });
    other = await createFixture({ slug: 'pages-other', t: f.t, sandbox: f.sandbox });
    await f.addMethod({ rail: 'stripe', token: 'pm_card_visa', last4: '4242' });
    await other.addMethod({ rail: 'stripe', token: 'pm_card_visa', last4: '4242' });
    const v = await addUser(f.t.db, f.tenant.id, f.admin, { email: 'viewer@example.com', role: 'viewer' });
    viewer = { ...v.user, token: v.token };
    const o = await addUser(f.t.db, f.tenant.id, f.admin, { email: 'owner@example.com', role: 'approver' });
    owner = { ...o.user, token: o.token };
    const s2 = await addUser(f.t.db, f.tenant.id, f.admin, { email: 'second@example.com', role: 'admin' });
    second = { ...s2.user, token: s2.token };
    ownersAgent = (await f.newAgent({ name: 'owners-agent', actsForUserId: owner.id })).agentKey;
    s = await startSidecar(f, {}, { loginRateLimit: { limit: 1000, windowMs: 60_000 } });
  });
  afterAll(async () => {
    await s?.close();
    await other?.close();
    await f?.close();
  });

  it('a viewer cannot approve, even with their own token typed at the step-up', async () => {
    const id = await request(10_00);
    const b = await new Browser(s.url).signIn(viewer.token);
    const r = await b.approve(id, viewer.token);
    expect(r.response.status).toBe(409);
    expect(r.text).not.toMatch(/apt_/);
    expect(await statusOf(id)).toBe('pending');
  });

  it('the human an agent key acts for cannot approve that agent’s request on the page', async () => {
    const id = await request(11_00, ownersAgent);
    const b = await new Browser(s.url).signIn(owner.token);
    const r = await b.approve(id, owner.token);
    expect(r.response.status).toBe(409);
    expect(r.text).not.toMatch(/apt_/);
    expect(await statusOf(id)).toBe('pending');
  });

  it('dual control: the same human approving twice on the page mints no token', async () => {
    const id = await request(2_000_00);
    const b = await new Browser(s.url).signIn(f.admin.token);
    const first = await b.approve(id, f.admin.token);
    expect(first.response.status).toBe(200);
    expect(first.text).not.toMatch(/apt_/);
    const again = await b.approve(id, f.admin.token);
    expect(again.response.status).toBe(409);
    expect(again.text).not.toMatch(/apt_/);
    expect(await statusOf(id)).toBe('pending');
    // A second, distinct human completes it.
    const c = await new Browser(s.url).signIn(second.token);
    const done = await c.approve(id, second.token);
    expect(done.response.status).toBe(200);
    expect(done.text).toMatch(/apt_[A-Za-z0-9_-]{43}/);
  });

  it('the step-up token must be the logged-in human’s: another approver’s token approves nothing', async () => {
    const id = await request(12_00);
    const b = await new Browser(s.url).signIn(f.approver.token);
    const r = await b.approve(id, f.admin.token);
    expect(r.response.status).toBe(401);
    expect(await statusOf(id)).toBe('pending');
    const r2 = await b.approve(id, other.admin.token);
    expect(r2.response.status).toBe(401);
    expect(await statusOf(id)).toBe('pending');
  });

  it('expired, rejected and consumed approvals cannot be approved on the page', async () => {
    const b = await new Browser(s.url).signIn(f.admin.token);
    const expired = await request(13_00);
    await sql("UPDATE approvals SET expires_at = now() - interval '1 second' WHERE id = $1", [expired]);
    const e = await b.approve(expired, f.admin.token);
    expect(e.response.status).toBe(409);
    expect(e.text).not.toMatch(/apt_/);

    const rejected = await request(14_00);
    await reject(f.t.db, f.tenant.id, f.approver, rejected, 'no');
    const r = await b.approve(rejected, f.admin.token);
    expect(r.response.status).toBe(409);
    expect(r.text).not.toMatch(/apt_/);

    const used = await request(15_00);
    const ok = await b.approve(used, f.admin.token);
    const token = /apt_[A-Za-z0-9_-]{43}/.exec(ok.text)![0];
    const inv = (
      await sql<{ number: string }>(
        "SELECT i.number FROM approvals a JOIN invoices i ON i.id = (a.params->>'invoice_id')::uuid WHERE a.id = $1",
        [used],
      )
    )[0]!.number;
    await payInvoice(
      f.deps,
      { agentKey: f.agentKey },
      { invoice: inv, amount: '15.00', currency: 'USD', method: 'stripe', approval_token: token },
    );
    expect(await statusOf(used)).toBe('consumed');
    const c = await b.approve(used, f.admin.token);
    expect(c.response.status).toBe(409);
    expect(c.text).not.toMatch(/apt_/);
    // Revoking a consumed one is refused too.
    expect((await b.reject(used)).response.status).toBe(409);
    expect(await statusOf(used)).toBe('consumed');
  });

  it("another tenant's human can neither see nor approve nor reject this tenant's request", async () => {
    const id = await request(16_00);
    const b = await new Browser(s.url).signIn(other.admin.token);
    expect((await b.request('GET', `/approvals/${id}`)).response.status).toBe(404);
    const r = await b.approve(id, other.admin.token);
    expect(r.response.status).toBe(404);
    expect(r.text).not.toMatch(/apt_/);
    expect((await b.reject(id)).response.status).toBe(404);
    expect(await statusOf(id)).toBe('pending');
  });

  it('a POST without the CSRF field, or with another session’s, changes nothing', async () => {
    const id = await request(17_00);
    const a = await new Browser(s.url).signIn(f.admin.token);
    const b = await new Browser(s.url).signIn(f.approver.token);
    const noCsrf = await a.request('POST', `/approvals/${id}/reject`, {});
    expect(noCsrf.response.status).toBe(403);
    const foreign = await a.request('POST', `/approvals/${id}/approve`, {
      _csrf: b.csrfToken,
      token: f.admin.token,
    });
    expect(foreign.response.status).toBe(403);
    expect(await statusOf(id)).toBe('pending');
  });

  it('an approve or reject POST for a malformed approval id is a 404 page, not a server error', async () => {
    const b = await new Browser(s.url).signIn(f.admin.token);
    for (const bad of ['not-a-uuid', '1', "x' OR '1'='1"]) {
      const path = encodeURIComponent(bad);
      const r = await b.approve(path, f.admin.token);
      expect(r.response.status, `approve ${bad}`).toBe(404);
      const j = await b.reject(path);
      expect(j.response.status, `reject ${bad}`).toBe(404);
    }
  });
});
