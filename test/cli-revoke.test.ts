/**
 * Revoking access (the BUILT CLI): `paygate agent-key disable` for a leaked or retired agent key, and
 * `paygate user disable` for a human who leaves. Both take effect at once, are an admin's to do, and are
 * on the record; the tenant's last admin cannot be disabled.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RefusedError } from '../src/errors.js';
import { type ApprovalRequired, payInvoice } from '../src/payments/pay.js';
import { cliFor } from './support/cli.js';
import { createFixture, type Fixture } from './support/fixture.js';

describe('revoking access', () => {
  let f: Fixture;
  let other: Fixture;
  let cli: ReturnType<typeof cliFor>['cli'];
  const audited = async (action: string, subjectId: string) =>
    (
      await f.t.db.withSystem((c) =>
        c.query<{ actor_id: string }>(
          'SELECT actor_id FROM audit_log WHERE action = $1 AND subject_id = $2',
          [action, subjectId],
        ),
      )
    ).rows;

  beforeAll(async () => {
    f = await createFixture({ slug: 'revoke' });
    other = await createFixture({ slug: 'revoke-other', t: f.t, sandbox: f.sandbox });
    await f.addMethod({ rail: 'stripe', token: 'pm_card_visa', brand: 'visa', last4: '4242' });
    cli = cliFor(f.t.url).cli;
  }, 120_000);
  afterAll(async () => {
    await other.close();
    await f.close();
  });

  it('an admin disables an agent key: its next call moves nothing; once; not an approver, not another tenant', async () => {
    const { agentKey } = await f.newAgent({ name: 'leaked' });
    await f.addInvoice('INV-RV-1', 25_00);
    const input = { invoice: 'INV-RV-1', amount: '25.00', currency: 'USD', method: 'stripe' };
    const ask = (await payInvoice(f.deps, { agentKey }, input)) as ApprovalRequired;
    const token = await f.approveAs(f.admin, ask.approval_id);

    const byApprover = await cli(['agent-key', 'disable', agentKey.id, '--tenant', 'revoke'], {
      PAYGATE_USER_TOKEN: f.approver.token,
    });
    expect(byApprover.code).toBe(1);
    expect(byApprover.stderr).toMatch(/is not an admin/);
    const notAnId = await cli(['agent-key', 'disable', 'pgk_leaked', '--tenant', 'revoke'], {
      PAYGATE_USER_TOKEN: f.admin.token,
    });
    expect(notAnId.code).toBe(2);
    // Tenant B's admin, naming tenant B: tenant A's key is not found there.
    const fromOther = await cli(['agent-key', 'disable', agentKey.id, '--tenant', 'revoke-other'], {
      PAYGATE_USER_TOKEN: other.admin.token,
    });
    expect(fromOther.code).toBe(1);
    expect(fromOther.stderr).toMatch(/no agent key/);

    const done = await cli(['agent-key', 'disable', agentKey.id, '--tenant', 'revoke', '--json'], {
      PAYGATE_USER_TOKEN: f.admin.token,
    });
    expect(done.code, done.stderr).toBe(0);
    expect(JSON.parse(done.stdout)).toMatchObject({ agent_key_id: agentKey.id, disabled: true });
    expect(await audited('agent_key.disabled', agentKey.id)).toEqual([{ actor_id: 'admin@example.com' }]);
    // The session that authenticated it earlier holds a stale copy: its next money-moving call is
    // refused, even with an approval a human gave before.
    await expect(payInvoice(f.deps, { agentKey }, { ...input, approval_token: token })).rejects.toMatchObject(
      {
        code: 'agent_key_disabled',
      },
    );
    expect(f.sandbox.ledger.charges().filter((c) => c.amountMinor === 25_00)).toHaveLength(0);

    const again = await cli(['agent-key', 'disable', agentKey.id, '--tenant', 'revoke'], {
      PAYGATE_USER_TOKEN: f.admin.token,
    });
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/was disabled at/);
  });

  it('an admin disables a human: their token stops working and their unused approvals lapse; the last admin stays', async () => {
    await f.addInvoice('INV-RV-2', 30_00);
    const input = { invoice: 'INV-RV-2', amount: '30.00', currency: 'USD', method: 'stripe' };
    const ask = (await payInvoice(f.deps, { agentKey: f.agentKey }, input)) as ApprovalRequired;
    const token = await f.approveAs(f.approver, ask.approval_id);

    const byApprover = await cli(['user', 'disable', 'admin@example.com', '--tenant', 'revoke'], {
      PAYGATE_USER_TOKEN: f.approver.token,
    });
    expect(byApprover.code).toBe(1);
    expect(byApprover.stderr).toMatch(/is not an admin/);
    // The only admin cannot disable themself (nor could anyone else): nobody would be left to manage it.
    const last = await cli(['user', 'disable', 'admin@example.com', '--tenant', 'revoke'], {
      PAYGATE_USER_TOKEN: f.admin.token,
    });
    expect(last.code).toBe(1);
    expect(last.stderr).toMatch(/last admin/);
    const unknown = await cli(['user', 'disable', 'nobody@example.com', '--tenant', 'revoke'], {
      PAYGATE_USER_TOKEN: f.admin.token,
    });
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/no user nobody@example.com/);

    const done = await cli(['user', 'disable', 'JDoe@example.com', '--tenant', 'revoke', '--json'], {
      PAYGATE_USER_TOKEN: f.admin.token,
    });
    expect(done.code, done.stderr).toBe(0);
    expect(JSON.parse(done.stdout)).toMatchObject({
      email: 'jdoe@example.com',
      role: 'approver',
      disabled: true,
    });
    expect(await audited('user.disabled', f.approver.id)).toEqual([{ actor_id: 'admin@example.com' }]);
    // Their token no longer works...
    const theirs = await cli(['approvals', 'list', '--tenant', 'revoke'], {
      PAYGATE_USER_TOKEN: f.approver.token,
    });
    expect(theirs.code).toBe(1);
    expect(theirs.stderr).toMatch(/not valid/);
    // ...and the approval they gave, not used yet, moves no money.
    const refused = await payInvoice(
      f.deps,
      { agentKey: f.agentKey },
      { ...input, approval_token: token },
    ).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(RefusedError);
    expect(refused).toMatchObject({ code: 'approval_lapsed' });
    const again = await cli(['user', 'disable', 'jdoe@example.com', '--tenant', 'revoke'], {
      PAYGATE_USER_TOKEN: f.admin.token,
    });
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/already disabled/);
  });
});
