/**
 * Reviewing and changing who may do what (the BUILT CLI): `paygate user list`, `paygate agent-key list`
 * and `paygate user set`. A lowered limit or a demotion takes back, at once, what the human may no
 * longer approve, including approvals they already gave that moved no money; the tenant's last admin
 * cannot be demoted; no listing shows a key or a token.
 */

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addUser } from '../src/directory/users.js';
import { type ApprovalRequired, payInvoice } from '../src/payments/pay.js';
import { cliFor } from './support/cli.js';
import { createFixture, type Fixture } from './support/fixture.js';

describe('access: list and change', () => {
  let f: Fixture;
  let other: Fixture;
  let cli: ReturnType<typeof cliFor>['cli'];
  const asAdmin = () => ({ PAYGATE_USER_TOKEN: f.admin.token });
  const audited = async (action: string, subjectId: string) =>
    (
      await f.t.db.withSystem((c) =>
        c.query<{ actor_id: string; details: unknown }>(
          "SELECT actor_id, content::jsonb->'details' AS details FROM audit_log WHERE action = $1 AND subject_id = $2",
          [action, subjectId],
        ),
      )
    ).rows;

  beforeAll(async () => {
    f = await createFixture({ slug: 'access' });
    other = await createFixture({ slug: 'access-other', t: f.t, sandbox: f.sandbox });
    await f.addMethod({ rail: 'stripe', token: 'pm_card_visa', brand: 'visa', last4: '4242' });
    cli = cliFor(f.t.url).cli;
  }, 120_000);
  afterAll(async () => {
    await other.close();
    await f.close();
  });

  it('user list: every human of the tenant with role, limit and status, to any of its users; never a token', async () => {
    const viewer = await addUser(f.t.db, f.tenant.id, f.admin, {
      email: 'viewer@example.com',
      role: 'viewer',
    });
    const listed = await cli(['user', 'list', '--tenant', 'access', '--json'], {
      PAYGATE_USER_TOKEN: viewer.token,
    });
    expect(listed.code, listed.stderr).toBe(0);
    const users = JSON.parse(listed.stdout) as Record<string, unknown>[];
    expect(users.map((u) => u.email)).toEqual([
      'admin@example.com',
      'jdoe@example.com',
      'viewer@example.com',
    ]);
    expect(users[1]).toMatchObject({
      user_id: f.approver.id,
      role: 'approver',
      approval_limit: '5000.00',
      approval_limit_minor: 5_000_00,
      approval_limit_currency: 'USD',
      status: 'active',
      disabled_at: null,
    });
    expect(users[0]).toMatchObject({ role: 'admin', approval_limit: null, approval_limit_minor: null });
    expect(listed.stdout).not.toContain(viewer.token);
    expect(listed.stdout).not.toMatch(/pgu_|token/);
    // Another tenant's human cannot read this tenant's list, and sees only their own tenant's.
    const foreign = await cli(['user', 'list', '--tenant', 'access'], {
      PAYGATE_USER_TOKEN: other.admin.token,
    });
    expect(foreign.code).toBe(1);
    const theirs = await cli(['user', 'list', '--tenant', 'access-other', '--json'], {
      PAYGATE_USER_TOKEN: other.admin.token,
    });
    expect((JSON.parse(theirs.stdout) as { user_id: string }[]).map((u) => u.user_id)).not.toContain(
      f.approver.id,
    );
    const human = await cli(['user', 'list', '--tenant', 'access'], asAdmin());
    expect(human.stdout).toMatch(/jdoe@example\.com\s+approver\s+5000\.00\s+USD\s+active/);
  });

  it('agent-key list: prefix, caps, whom it acts for, status and last call; never the key', async () => {
    const { agentKey, key } = await f.newAgent({
      name: 'payables-bot',
      actsForUserId: f.approver.id,
      maxPerPaymentMinor: 1_000_00,
      maxPerDayMinor: 2_500_50,
      capsCurrency: 'USD',
    });
    const before = await cli(['agent-key', 'list', '--tenant', 'access', '--json'], asAdmin());
    expect(before.code, before.stderr).toBe(0);
    const listed = (JSON.parse(before.stdout) as Record<string, unknown>[]).find(
      (k) => k.agent_key_id === agentKey.id,
    );
    expect(listed).toMatchObject({
      name: 'payables-bot',
      key_prefix: agentKey.keyPrefix,
      acts_for: 'jdoe@example.com',
      max_per_payment: '1000.00',
      max_per_day: '2500.50',
      max_per_payment_minor: 1_000_00,
      max_per_day_minor: 2_500_50,
      caps_currency: 'USD',
      rate_limit_per_minute: 60,
      status: 'active',
      last_call_at: null,
    });
    expect(key.startsWith(agentKey.keyPrefix)).toBe(true);
    expect(before.stdout).not.toContain(key);

    await f.addInvoice('INV-AC-0', 10_00);
    await payInvoice(
      f.deps,
      { agentKey },
      { invoice: 'INV-AC-0', amount: '10.00', currency: 'USD', method: 'stripe' },
    );
    await cli(['agent-key', 'disable', agentKey.id, '--tenant', 'access'], asAdmin());
    const after = await cli(['agent-key', 'list', '--tenant', 'access', '--json'], {
      PAYGATE_USER_TOKEN: f.approver.token,
    });
    const now = (JSON.parse(after.stdout) as Record<string, unknown>[]).find(
      (k) => k.agent_key_id === agentKey.id,
    )!;
    expect(now.status).toBe('disabled');
    expect(typeof now.disabled_at).toBe('string');
    expect(Date.parse(now.last_call_at as string)).toBeGreaterThan(Date.parse(now.created_at as string) - 1);
    const others = await cli(['agent-key', 'list', '--tenant', 'access-other', '--json'], {
      PAYGATE_USER_TOKEN: other.admin.token,
    });
    expect(others.stdout).not.toContain(agentKey.id);
  });

  it('user set: a lower limit takes back an approval over it that moved no money; audited with before and after', async () => {
    const bob = await addUser(f.t.db, f.tenant.id, f.admin, {
      email: 'bob@example.com',
      role: 'approver',
      limit: { amountMinor: 1_000_00, currency: 'USD' },
    });
    await f.addInvoice('INV-AC-1', 800_00);
    const input = { invoice: 'INV-AC-1', amount: '800.00', currency: 'USD', method: 'stripe' };
    const ask = (await payInvoice(f.deps, { agentKey: f.agentKey }, input)) as ApprovalRequired;
    const token = await f.approveAs({ ...bob.user }, ask.approval_id);

    const byApprover = await cli(
      ['user', 'set', 'bob@example.com', '--tenant', 'access', '--limit', '1.00', '--currency', 'USD'],
      {
        PAYGATE_USER_TOKEN: f.approver.token,
      },
    );
    expect(byApprover.code).toBe(1);
    expect(byApprover.stderr).toMatch(/is not an admin/);
    const malformed = await cli(
      ['user', 'set', 'bob@example.com', '--tenant', 'access', '--limit', '1.001', '--currency', 'USD'],
      asAdmin(),
    );
    expect(malformed.code).toBe(2);
    const noCurrency = await cli(
      ['user', 'set', 'bob@example.com', '--tenant', 'access', '--limit', '1.00'],
      asAdmin(),
    );
    expect(noCurrency.code).toBe(2);
    const nothing = await cli(['user', 'set', 'bob@example.com', '--tenant', 'access'], asAdmin());
    expect(nothing.code).toBe(2);
    expect(nothing.stderr).toMatch(/nothing to change/);
    const badRole = await cli(
      ['user', 'set', 'bob@example.com', '--tenant', 'access', '--role', 'owner'],
      asAdmin(),
    );
    expect(badRole.code).toBe(2);
    // None of the refusals changed anything.
    expect((await audited('user.access_changed', bob.user.id)).length).toBe(0);

    const lowered = await cli(
      [
        'user',
        'set',
        'BOB@example.com',
        '--tenant',
        'access',
        '--limit',
        '500.00',
        '--currency',
        'USD',
        '--json',
      ],
      asAdmin(),
    );
    expect(lowered.code, lowered.stderr).toBe(0);
    expect(JSON.parse(lowered.stdout)).toMatchObject({
      email: 'bob@example.com',
      role: 'approver',
      approval_limit: '500.00',
      approval_limit_minor: 500_00,
      previous: { role: 'approver', approval_limit: '1000.00' },
    });
    await expect(
      payInvoice(f.deps, { agentKey: f.agentKey }, { ...input, approval_token: token }),
    ).rejects.toMatchObject({ code: 'approval_lapsed' });
    expect(f.sandbox.ledger.charges().filter((c) => c.amountMinor === 800_00)).toHaveLength(0);
    expect(await audited('user.access_changed', bob.user.id)).toEqual([
      {
        actor_id: 'admin@example.com',
        details: {
          email: 'bob@example.com',
          before: { role: 'approver', limit: { amountMinor: 1_000_00, currency: 'USD' } },
          after: { role: 'approver', limit: { amountMinor: 500_00, currency: 'USD' } },
        },
      },
    ]);

    // Asking for what already holds changes nothing and adds nothing to the record.
    const same = await cli(
      [
        'user',
        'set',
        'bob@example.com',
        '--tenant',
        'access',
        '--role',
        'approver',
        '--limit',
        '500.00',
        '--currency',
        'USD',
      ],
      asAdmin(),
    );
    expect(same.code, same.stderr).toBe(0);
    expect(await audited('user.access_changed', bob.user.id)).toHaveLength(1);
    // --remove-limit removes it; --role alone keeps the limit as it is.
    const unlimited = await cli(
      ['user', 'set', 'bob@example.com', '--tenant', 'access', '--remove-limit', '--json'],
      asAdmin(),
    );
    expect(JSON.parse(unlimited.stdout)).toMatchObject({ approval_limit: null, approval_limit_minor: null });
    const viewer = await cli(
      ['user', 'set', 'bob@example.com', '--tenant', 'access', '--role', 'viewer'],
      asAdmin(),
    );
    expect(viewer.code, viewer.stderr).toBe(0);
    expect(viewer.stdout).toMatch(/approver, no limit -> viewer, no limit/);
  });

  it('user set: a demoted approver can no longer approve; the last admin cannot be demoted; a disabled or unknown user is refused', async () => {
    const carol = await addUser(f.t.db, f.tenant.id, f.admin, {
      email: 'carol@example.com',
      role: 'approver',
    });
    await cli(['user', 'set', 'carol@example.com', '--tenant', 'access', '--role', 'viewer'], asAdmin());
    await f.addInvoice('INV-AC-2', 20_00);
    const ask = (await payInvoice(
      f.deps,
      { agentKey: f.agentKey },
      { invoice: 'INV-AC-2', amount: '20.00', currency: 'USD', method: 'stripe' },
    )) as ApprovalRequired;
    const approveAsCarol = await cli(['approvals', 'approve', ask.approval_id, '--as', 'carol@example.com'], {
      PAYGATE_USER_TOKEN: carol.token,
    });
    expect(approveAsCarol.code).toBe(1);
    expect(approveAsCarol.stderr).toMatch(/carol@example\.com is a viewer/);

    const last = await cli(
      ['user', 'set', 'admin@example.com', '--tenant', 'access', '--role', 'approver'],
      asAdmin(),
    );
    expect(last.code).toBe(1);
    expect(last.stderr).toMatch(/last admin/);
    // With a second admin, the first may step down; the one who stepped down can no longer change anyone.
    await cli(['user', 'set', 'carol@example.com', '--tenant', 'access', '--role', 'admin'], asAdmin());
    const stepDown = await cli(
      ['user', 'set', 'admin@example.com', '--tenant', 'access', '--role', 'approver'],
      asAdmin(),
    );
    expect(stepDown.code, stepDown.stderr).toBe(0);
    const noLonger = await cli(
      ['user', 'set', 'carol@example.com', '--tenant', 'access', '--role', 'viewer'],
      asAdmin(),
    );
    expect(noLonger.code).toBe(1);
    expect(noLonger.stderr).toMatch(/not an admin/);
    // Carol, now the only admin, cannot demote herself either.
    const herself = await cli(
      ['user', 'set', 'carol@example.com', '--tenant', 'access', '--role', 'viewer'],
      {
        PAYGATE_USER_TOKEN: carol.token,
      },
    );
    expect(herself.code).toBe(1);
    expect(herself.stderr).toMatch(/last admin/);
    await cli(['user', 'set', 'admin@example.com', '--tenant', 'access', '--role', 'admin'], {
      PAYGATE_USER_TOKEN: carol.token,
    });

    const unknown = await cli(
      ['user', 'set', 'nobody@example.com', '--tenant', 'access', '--role', 'viewer'],
      asAdmin(),
    );
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/no user nobody@example\.com/);
    await cli(['user', 'disable', 'viewer@example.com', '--tenant', 'access'], asAdmin());
    const disabled = await cli(
      ['user', 'set', 'viewer@example.com', '--tenant', 'access', '--role', 'admin'],
      asAdmin(),
    );
    expect(disabled.code).toBe(1);
    expect(disabled.stderr).toMatch(/is disabled/);
    const listed = JSON.parse(
      (await cli(['user', 'list', '--tenant', 'access', '--json'], asAdmin())).stdout,
    ) as { email: string; status: string }[];
    expect(listed.find((u) => u.email === 'viewer@example.com')?.status).toBe('disabled');
    // Another tenant's admin cannot change this tenant's humans.
    const foreign = await cli(['user', 'set', 'jdoe@example.com', '--tenant', 'access', '--role', 'viewer'], {
      PAYGATE_USER_TOKEN: other.admin.token,
    });
    expect(foreign.code).toBe(1);
  });
});
