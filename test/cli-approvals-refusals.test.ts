/**
 * `paygate approvals approve|reject` (the BUILT CLI; run `npm run build` first):
 * malformed ids, another tenant's approval, the human the agent key acts for, a viewer.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addUser } from '../src/directory/users.js';
import { type ApprovalRequired, payInvoice } from '../src/payments/pay.js';
import { cliFor } from './support/cli.js';
import { createFixture, type Fixture } from './support/fixture.js';

describe('paygate approvals approve', () => {
  let f: Fixture;
  let other: Fixture;
  let cli: ReturnType<typeof cliFor>['cli'];

  async function ask(fx: Fixture, number: string, amountMinor: number, agentKey = fx.agentKey) {
    await fx.addInvoice(number, amountMinor);
    const r = (await payInvoice(
      fx.deps,
      { agentKey },
      { invoice: number, amount: (amountMinor / 100).toFixed(2), currency: 'USD', method: 'stripe' },
    )) as ApprovalRequired;
    return r.approval_id;
  }
  const statusOf = async (id: string) => {
    const { rows } = await f.t.db.withSystem((c) =>
      c.query<{ status: string }>('SELECT status FROM approvals WHERE id = $1', [id]),
    );
    return rows[0]!.status;
  };

  beforeAll(async () => {
    f = await createFixture({ slug: 'cli' });
    other = await createFixture({ slug: 'cli-other', t: f.t, sandbox: f.sandbox });
    await f.addMethod({ rail: 'stripe', token: 'pm_card_visa', last4: '4242' });
    await other.addMethod({ rail: 'stripe', token: 'pm_card_visa', last4: '4242' });
    cli = cliFor(f.t.url).cli;
  });
  afterAll(async () => {
    await other?.close();
    await f?.close();
  });

  it('a malformed approval id is bad usage: exit 2, no database error text', async () => {
    for (const verb of ['approve', 'reject']) {
      const r = await cli(['approvals', verb, 'not-a-uuid', '--as', 'admin@example.com'], {
        PAYGATE_USER_TOKEN: f.admin.token,
      });
      expect(r.code, `${verb}: ${r.stderr}`).toBe(2);
      expect(r.stderr).not.toMatch(/invalid input syntax|uuid:/i);
    }
  });

  it("another tenant's approval is not found, and stays pending", async () => {
    const id = await ask(other, 'INV-C-OTHER', 10_00);
    const r = await cli(['approvals', 'approve', id, '--as', 'admin@example.com', '--json'], {
      PAYGATE_USER_TOKEN: f.admin.token,
    });
    expect(r.code).toBe(1);
    expect(r.stdout).not.toMatch(/apt_/);
    const { rows } = await f.t.db.withSystem((c) =>
      c.query<{ status: string }>('SELECT status FROM approvals WHERE id = $1', [id]),
    );
    expect(rows[0]!.status).toBe('pending');
  });

  it('the human the key acts for, and a viewer, are refused with exit 1', async () => {
    const owner = await addUser(f.t.db, f.tenant.id, f.admin, { email: 'owner@example.com', role: 'admin' });
    const viewer = await addUser(f.t.db, f.tenant.id, f.admin, { email: 'v@example.com', role: 'viewer' });
    const { agentKey } = await f.newAgent({ name: 'owned', actsForUserId: owner.user.id });
    const id = await ask(f, 'INV-C-OWNED', 11_00, agentKey);
    const a = await cli(['approvals', 'approve', id, '--as', 'owner@example.com'], {
      PAYGATE_USER_TOKEN: owner.token,
    });
    expect(a.code).toBe(1);
    expect(a.stdout).not.toMatch(/apt_/);
    const v = await cli(['approvals', 'approve', id, '--as', 'v@example.com'], {
      PAYGATE_USER_TOKEN: viewer.token,
    });
    expect(v.code).toBe(1);
    expect(v.stdout).not.toMatch(/apt_/);
    expect(await statusOf(id)).toBe('pending');
  });
});
