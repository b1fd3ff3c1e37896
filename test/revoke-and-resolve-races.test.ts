/**
 * Races around revoking an admin and resolving alerts (a hostile pass on user disable and alerts
 * resolve), against the real database and the built CLI where a human would use it.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addUser, disableUser } from '../src/directory/users.js';
import { recordHeldPaymentNotMade } from '../src/payments/held.js';
import { transitionInvoice } from '../src/payments/invoices.js';
import { type ApprovalRequired, PaymentFailedError, payInvoice } from '../src/payments/pay.js';
import { applyPaymentOutcome, getPayment } from '../src/payments/payments.js';
import { insertSubmission, reconcilePayment } from '../src/payments/phases.js';
import { MAX_SUBMIT_ATTEMPTS, RESUBMIT_WINDOW_MS } from '../src/worker/index.js';
import { cliFor } from './support/cli.js';
import { deferred } from './support/deferred.js';
import { createFixture, type Fixture } from './support/fixture.js';

describe('revoking and resolving, racing', () => {
  let base: Fixture;
  let cli: ReturnType<typeof cliFor>['cli'];
  let n = 0;
  beforeAll(async () => {
    base = await createFixture({ slug: 'h3-base' });
    cli = cliFor(base.t.url).cli;
  }, 120_000);
  afterAll(async () => base.close());

  const fresh = () => createFixture({ slug: `h3-${++n}`, t: base.t, sandbox: base.sandbox });

  /** Polls `sql` (a count, run outside any tenant) until it reaches `atLeast`. */
  async function until(f: Fixture, sql: string, params: unknown[], atLeast: number, what: string) {
    const deadline = Date.now() + 15_000;
    for (;;) {
      const { rows } = await f.t.db.withSystem((c) => c.query<{ n: number }>(sql, params));
      if (Number(rows[0]!.n) >= atLeast) return;
      if (Date.now() > deadline) throw new Error(what);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  it('an admin disabled while their own `user disable` waited its turn on the admins lock does not then disable another admin', async () => {
    // Three admins: admin@, b@, c@. admin@ disables b@ while b@ (authenticated a moment earlier, still
    // enabled then) disables c@. The lock makes them take turns, and b@'s turn comes after b@ was
    // disabled; disableUser checks only the actor object authenticated before the lock, so b@ disabled
    // still disables c@. The tenant is left with one admin, chosen by a revoked one.
    const f = await fresh();
    const b = await addUser(f.t.db, f.tenant.id, f.admin, { email: 'b@example.com', role: 'admin' });
    await addUser(f.t.db, f.tenant.id, f.admin, { email: 'c@example.com', role: 'admin' });

    // Hold b@'s row so admin@'s disable stops inside its transaction, holding the admins lock.
    const gate = deferred();
    const gotRow = deferred<number>();
    const holder = f.t.db.withTenant(f.tenant.id, async (c) => {
      const pid = (await c.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
      await c.query("SELECT 1 FROM users WHERE email = 'b@example.com' FOR UPDATE");
      gotRow.resolve(pid);
      await gate.promise;
    });
    const holderPid = await gotRow.promise;
    const byAdmin = disableUser(f.t.db, f.tenant.id, f.admin, 'b@example.com');
    await until(
      f,
      'SELECT count(*)::int AS n FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))',
      [holderPid],
      1,
      "admin@'s disable never waited for b@'s row",
    );
    // b@ runs `paygate user disable c@example.com`: authenticated (still enabled), then waits its turn.
    const byB = cli(['user', 'disable', 'c@example.com', '--tenant', f.tenant.slug], {
      PAYGATE_USER_TOKEN: b.token,
    });
    await until(
      f,
      "SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event = 'advisory'",
      [],
      1,
      "b@'s disable never waited on the admins lock",
    );
    gate.resolve();
    await holder;
    await byAdmin;
    const result = await byB;

    const { rows } = await f.t.db.withTenant(f.tenant.id, (c) =>
      c.query<{ email: string; disabled: boolean }>(
        'SELECT email, disabled_at IS NOT NULL AS disabled FROM users ORDER BY email',
      ),
    );
    expect(rows.find((r) => r.email === 'b@example.com')).toMatchObject({ disabled: true });
    // b@ was disabled before their command's turn: it must be refused, and c@ stays an admin.
    expect(result.code, result.stdout).toBe(1);
    expect(rows.find((r) => r.email === 'c@example.com')).toMatchObject({ disabled: false });
    await f.close();
  }, 60_000);

  it('a paid-twice alert cannot be resolved while the other payment of its invoice is undecided; recording that one not made settles it, the invoice paid', async () => {
    // Same money path as engine-failures' 'a late success reported while a held payment of the invoice
    // was live...' test, with one step more: before the admin records the held payment not made, an
    // approver marks the paid-twice alert dealt with (`paygate alerts resolve`, allowed for every kind
    // but the held one). recordHeldPaymentNotMade finds the payment that moved the money only through an
    // OPEN invoice_paid_twice alert, so it no longer does: the invoice goes back to approved and the
    // earlier payment, which did pay the vendor, stays failed (unrefundable).
    const f = await fresh();
    await f.addMethod({ rail: 'stripe', token: 'pm_card_visa_chargeDeclined' });
    await f.addInvoice('INV-H3', 42_00);
    const input = { invoice: 'INV-H3', amount: '42.00', currency: 'USD', method: 'stripe' };
    const ask = (await payInvoice(f.deps, { agentKey: f.agentKey }, input)) as ApprovalRequired;
    const failed = await payInvoice(
      f.deps,
      { agentKey: f.agentKey },
      { ...input, approval_token: await f.approveAs(f.admin, ask.approval_id) },
    ).catch((e: unknown) => e);
    expect(failed).toBeInstanceOf(PaymentFailedError);
    const earlierId = (failed as PaymentFailedError).payment.payment_id!;
    const earlier = (await f.t.db.withTenant(f.tenant.id, (c) => getPayment(c, earlierId)))!;

    const heldId = randomUUID();
    await f.t.db.withTenant(f.tenant.id, async (c) => {
      await insertSubmission(c, {
        id: heldId,
        tenantId: f.tenant.id,
        invoiceId: earlier.invoiceId,
        agentKeyId: f.agentKey.id,
        approvalId: earlier.approvalId,
        amountMinor: 42_00,
        currency: 'USD',
        rail: 'stripe' as const,
        provider: 'stripe' as const,
        paymentMethodId: earlier.paymentMethodId,
        approvedBy: ['admin@example.com'],
      });
      await c.query(
        "UPDATE payments SET recovery_point = 'provider_called', submit_attempts = $2 WHERE id = $1",
        [heldId, MAX_SUBMIT_ATTEMPTS],
      );
      await transitionInvoice(c, earlier.invoiceId, 'approved', 'processing');
    });
    const later = new Date(Date.now() + RESUBMIT_WINDOW_MS + 10 * 60_000);
    const held = await reconcilePayment(f.deps, f.tenant.id, heldId, {
      now: later,
      resubmit: { maxAttempts: MAX_SUBMIT_ATTEMPTS, withinMs: RESUBMIT_WINDOW_MS },
    });
    expect(held.status).toBe('processing');
    await f.t.db.withTenant(f.tenant.id, (c) =>
      applyPaymentOutcome(
        c,
        earlierId,
        { status: 'succeeded' },
        { actorType: 'provider', actorId: 'stripe' },
      ),
    );
    const { rows: twice } = await f.t.db.withTenant(f.tenant.id, (c) =>
      c.query<{ id: string }>("SELECT id FROM alerts WHERE kind = 'invoice_paid_twice' AND status = 'open'"),
    );
    expect(twice).toHaveLength(1);

    // The approver has looked at it ("checked with Stripe, noted") and marks it dealt with.
    const resolved = await cli(
      ['alerts', 'resolve', twice[0]!.id, '--tenant', f.tenant.slug, '--note', 'checked with Stripe'],
      { PAYGATE_USER_TOKEN: f.approver.token },
    );
    // Refused while the other payment is undecided: that payment's outcome decides which of the two paid.
    expect(resolved.code).toBe(1);
    expect(resolved.stderr).toMatch(/waits on payment .* still processing/);
    // The admin's later finding that the held one was never made leaves the invoice paid, by the
    // payment that moved the money, and settles the paid-twice alert with it.
    await f.t.db.withTenant(f.tenant.id, (c) =>
      recordHeldPaymentNotMade(c, f.tenant.id, heldId, f.admin, 'no such PaymentIntent'),
    );
    const after = await f.t.db.withTenant(f.tenant.id, async (c) => ({
      invoice: (
        await c.query<{ status: string }>('SELECT status FROM invoices WHERE id = $1', [earlier.invoiceId])
      ).rows[0]!.status,
      alert: (await c.query<{ status: string }>('SELECT status FROM alerts WHERE id = $1', [twice[0]!.id]))
        .rows[0]!.status,
    }));
    expect(after).toEqual({ invoice: 'paid', alert: 'resolved' });
    const earlierNow = (await f.t.db.withTenant(f.tenant.id, (c) => getPayment(c, earlierId)))!;
    expect(earlierNow.status).toBe('succeeded');
    await f.close();
  }, 60_000);
});
