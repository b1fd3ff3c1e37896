/**
 * Acting on authority that was taken away after the human authenticated: every command reads the human
 * from their token first, then acts in a transaction of its own, and an admin may demote or disable
 * them in between (`paygate user set`, `user disable`). The act re-reads the human, row locked, as its
 * transaction's first step: a stale copy of an admin or approver changes nothing.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { approve, reject } from '../src/approvals/approvals.js';
import { createAgentKey, disableAgentKey } from '../src/directory/agent-keys.js';
import { addVendor } from '../src/directory/counterparties.js';
import { createSealer } from '../src/directory/encryption.js';
import { addPaymentMethod } from '../src/directory/payment-methods.js';
import { addUser, changeUserAccess, disableUser, type User } from '../src/directory/users.js';
import { createAlert, resolveAlert } from '../src/payments/alerts.js';
import { addInvoice } from '../src/payments/invoices.js';
import { type ApprovalRequired, payInvoice } from '../src/payments/pay.js';
import { createFixture, type Fixture } from './support/fixture.js';

describe('stale authority', () => {
  let f: Fixture;
  const count = async (sql: string) =>
    Number((await f.t.db.withSystem((c) => c.query<{ n: number }>(sql))).rows[0]!.n);

  beforeAll(async () => {
    f = await createFixture({ slug: 'stale' });
  }, 120_000);
  afterAll(async () => {
    await f?.close();
  });

  /** A second admin, as their token read them; then demoted (or disabled) by the fixture's admin. */
  async function formerAdmin(how: 'demoted' | 'disabled', n: number): Promise<User> {
    const { user } = await addUser(f.t.db, f.tenant.id, f.admin, {
      email: `former${n}@example.com`,
      role: 'admin',
    });
    if (how === 'demoted')
      await changeUserAccess(f.t.db, f.tenant.id, f.admin, user.email, { role: 'viewer' });
    else await disableUser(f.t.db, f.tenant.id, f.admin, user.email);
    return user; // the copy read before: role admin, not disabled
  }

  it('an admin demoted after authenticating adds no human, key, vendor, method or invoice', async () => {
    const stale = await formerAdmin('demoted', 1);
    const before = {
      users: await count('SELECT count(*) AS n FROM users'),
      keys: await count('SELECT count(*) AS n FROM agent_keys'),
      vendors: await count('SELECT count(*) AS n FROM counterparties'),
      methods: await count('SELECT count(*) AS n FROM payment_methods'),
      invoices: await count('SELECT count(*) AS n FROM invoices'),
    };
    const refused = { code: 'admin_required' };
    await expect(
      addUser(f.t.db, f.tenant.id, stale, { email: 'planted@example.com', role: 'admin' }),
    ).rejects.toMatchObject(refused);
    await expect(createAgentKey(f.t.db, f.tenant.id, stale, { name: 'planted' })).rejects.toMatchObject(
      refused,
    );
    await expect(
      addVendor(f.t.db, f.tenant.id, stale, createSealer('test-secret'), {
        name: 'Planted LLC',
        paypalEmail: 'planted@example.com',
      }),
    ).rejects.toMatchObject(refused);
    await expect(
      addPaymentMethod(f.t.db, f.tenant.id, stale, { rail: 'stripe', token: 'pm_card_visa' }),
    ).rejects.toMatchObject(refused);
    await expect(
      addInvoice(f.t.db, f.tenant.id, stale, {
        number: 'INV-PLANTED',
        vendor: 'Acme Supplies',
        amountMinor: 1_00,
        currency: 'USD',
      }),
    ).rejects.toMatchObject(refused);
    expect({
      users: await count('SELECT count(*) AS n FROM users'),
      keys: await count('SELECT count(*) AS n FROM agent_keys'),
      vendors: await count('SELECT count(*) AS n FROM counterparties'),
      methods: await count('SELECT count(*) AS n FROM payment_methods'),
      invoices: await count('SELECT count(*) AS n FROM invoices'),
    }).toEqual(before);
  });

  it('an admin disabled after authenticating cannot disable an agent key', async () => {
    const stale = await formerAdmin('disabled', 2);
    await expect(disableAgentKey(f.t.db, f.tenant.id, stale, f.agentKey.id)).rejects.toMatchObject({
      code: 'user_disabled',
    });
    expect(await count(`SELECT count(*) AS n FROM agent_keys WHERE disabled_at IS NOT NULL`)).toBe(0);
  });

  it('an approver demoted to viewer after authenticating resolves no alert', async () => {
    const { user: approver } = await addUser(f.t.db, f.tenant.id, f.admin, {
      email: 'approver2@example.com',
      role: 'approver',
    });
    const alertId = await f.t.db.withTenant(f.tenant.id, (c) =>
      createAlert(c, {
        tenantId: f.tenant.id,
        kind: 'manual_review',
        code: 'declined',
        message: 'a test alert',
        nextStep: 'look at it',
      }),
    );
    await changeUserAccess(f.t.db, f.tenant.id, f.admin, approver.email, { role: 'viewer' });
    await expect(
      f.t.db.withTenant(f.tenant.id, (c) => resolveAlert(c, f.tenant.id, alertId, approver, 'stale')),
    ).rejects.toMatchObject({ code: 'approver_required' });
    expect(await count(`SELECT count(*) AS n FROM alerts WHERE id = '${alertId}' AND status = 'open'`)).toBe(
      1,
    );
  });

  it('an approver whose limit was lowered after signing in cannot approve above it; demoted, cannot reject', async () => {
    await f.addMethod({ rail: 'stripe', token: 'pm_card_visa', brand: 'visa', last4: '4242' });
    const { user: signedIn } = await addUser(f.t.db, f.tenant.id, f.admin, {
      email: 'approver3@example.com',
      role: 'approver',
      limit: { amountMinor: 1_000_00, currency: 'USD' },
    });
    await f.addInvoice('INV-STALE-1', 800_00);
    const ask = (await payInvoice(
      f.deps,
      { agentKey: f.agentKey },
      { invoice: 'INV-STALE-1', amount: '800.00', currency: 'USD', method: 'stripe' },
    )) as ApprovalRequired;
    await changeUserAccess(f.t.db, f.tenant.id, f.admin, signedIn.email, {
      limit: { amountMinor: 500_00, currency: 'USD' },
    });
    await expect(approve(f.t.db, f.tenant.id, signedIn, ask.approval_id)).rejects.toMatchObject({
      code: 'over_approval_limit',
    });
    await changeUserAccess(f.t.db, f.tenant.id, f.admin, signedIn.email, { role: 'viewer' });
    await expect(reject(f.t.db, f.tenant.id, signedIn, ask.approval_id, 'stale')).rejects.toMatchObject({
      code: 'approver_role_required',
    });
    const [{ status }] = (
      await f.t.db.withSystem((c) =>
        c.query<{ status: string }>('SELECT status FROM approvals WHERE id = $1', [ask.approval_id]),
      )
    ).rows as [{ status: string }];
    expect(status).toBe('pending');
  });
});
