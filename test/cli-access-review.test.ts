/**
 * Hostile pass on d8eb166 (`paygate user list`, `agent-key list`, `user set`), against the BUILT CLI and
 * the engine's own functions: contradictory or empty limit flags, what the CLI says of dual control once
 * a first approver lost the right, and what the key listing says of a key's last call.
 */

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addUser } from '../src/directory/users.js';
import { type ApprovalRequired, payInvoice } from '../src/payments/pay.js';
import { listInvoicesTool } from '../tools/list_invoices.js';
import { cliFor } from './support/cli.js';
import { createFixture, type Fixture } from './support/fixture.js';

describe('access review: user set and the listings', () => {
  let f: Fixture;
  let cli: ReturnType<typeof cliFor>['cli'];
  let n = 0;
  const asAdmin = () => ({ PAYGATE_USER_TOKEN: f.admin.token });
  const pay = (invoice: string, amount: string) => ({ invoice, amount, currency: 'USD', method: 'stripe' });
  const limitOf = async (email: string) =>
    (
      await f.t.db.withSystem((c) =>
        c.query<{ role: string; approval_limit_minor: number | null }>(
          'SELECT role, approval_limit_minor FROM users WHERE tenant_id = $1 AND email = $2',
          [f.tenant.id, email],
        ),
      )
    ).rows[0];
  const approver = async (limitMinor?: number) => {
    n += 1;
    return addUser(f.t.db, f.tenant.id, f.admin, {
      email: `reviewed${n}@example.com`,
      role: 'approver',
      ...(limitMinor ? { limit: { amountMinor: limitMinor, currency: 'USD' } } : {}),
    });
  };

  beforeAll(async () => {
    f = await createFixture({ slug: 'access-review', dualAbove: 10_000_00 });
    await f.addMethod({ rail: 'stripe', token: 'pm_card_visa', brand: 'visa', last4: '4242' });
    cli = cliFor(f.t.url).cli;
  }, 120_000);
  afterAll(async () => {
    await f.close();
  });

  it('user set: --limit together with --remove-limit is bad usage (exit 2), not the limit silently removed', async () => {
    const bob = await approver(1_000_00);
    // Contradictory flags are bad usage: neither reading is taken (commander would keep the last one).
    const both = await cli(
      ['user', 'set', bob.user.email, '--tenant', 'access-review', '--limit', '100.00', '--remove-limit'],
      asAdmin(),
    );
    expect(both.code, both.stdout).toBe(2);
    expect((await limitOf(bob.user.email))?.approval_limit_minor).toBe(1_000_00);
  });

  it('user set: an empty --limit is bad usage (exit 2), not ignored while --role goes through', async () => {
    const carol = await approver(1_000_00);
    // e.g. --limit "$LIMIT" with LIMIT unset: the role changes, the limit the admin meant to set does not.
    const empty = await cli(
      [
        'user',
        'set',
        carol.user.email,
        '--tenant',
        'access-review',
        '--role',
        'admin',
        '--limit',
        '',
        '--currency',
        'USD',
      ],
      asAdmin(),
    );
    expect(empty.code, empty.stdout).toBe(2);
    expect(await limitOf(carol.user.email)).toEqual({ role: 'approver', approval_limit_minor: 1_000_00 });
  });

  it('approvals approve: with the first approver demoted since, the CLI does not say "2 of 2" while nothing was completed', async () => {
    const erin = await approver();
    const frank = await approver();
    await f.addInvoice('INV-REV-2', 12_000_00);
    const ask = (await payInvoice(
      f.deps,
      { agentKey: f.agentKey },
      pay('INV-REV-2', '12000.00'),
    )) as ApprovalRequired;
    expect(ask.required_approvals).toBe(2);
    expect(await f.approveAs(erin.user, ask.approval_id)).toBeUndefined();
    const demoted = await cli(
      ['user', 'set', erin.user.email, '--tenant', 'access-review', '--role', 'viewer'],
      asAdmin(),
    );
    expect(demoted.code, demoted.stderr).toBe(0);

    const second = await cli(['approvals', 'approve', ask.approval_id, '--as', frank.user.email], {
      PAYGATE_USER_TOKEN: frank.token,
    });
    expect(second.code, second.stderr).toBe(0);
    // Erin's approval no longer counts, so nothing was minted and the request is still pending...
    expect(second.stdout).not.toMatch(/approval token/);
    // ...but the CLI reports two of the two approvals needed as recorded, and asks for a second approver.
    expect(second.stdout).not.toMatch(/\(2 of 2\)/);
  });

  it("agent-key list: last_call_at shows a key's call to a read-only tool (a leaked key reading invoices was used)", async () => {
    const { agentKey } = await f.newAgent({ name: 'reader' });
    const listed = (await listInvoicesTool.handler({ deps: f.deps, caller: { agentKey } } as never, {})) as {
      invoices: unknown[];
    };
    expect(listed.invoices.length).toBeGreaterThan(0);
    const keys = await cli(['agent-key', 'list', '--tenant', 'access-review', '--json'], asAdmin());
    expect(keys.code, keys.stderr).toBe(0);
    const reader = (JSON.parse(keys.stdout) as { agent_key_id: string; last_call_at: string | null }[]).find(
      (k) => k.agent_key_id === agentKey.id,
    )!;
    expect(reader.last_call_at).not.toBeNull();
  });
});
