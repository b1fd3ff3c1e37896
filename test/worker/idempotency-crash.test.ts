/**
 * An agent retries pay_invoice with the same idempotency_key after the paygate process died
 * between the provider call and phase 3 (PAYGATE_CRASH_AT=after_provider_call, a real `paygate mcp`
 * process on stdio, built CLI). The reconciler resolves the payment; the retry with the same key must
 * then answer (replay / current state), not "in progress" for the key's 7-day retention. The same for
 * refund_payment (killed at after_refund_call), whose key answers with the refund its call made, and schedule_payment (killed at
 * after_phase1, its schedule committed), whose key answers with the schedule its call made.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addDays, todayIn } from '../../src/payments/calendar.js';
import { linkIdempotencyKey } from '../../src/payments/idempotency.js';
import {
  type ApprovalRequired,
  payInvoice,
  requestDigest,
  schedulePayment,
  withIdempotency,
} from '../../src/payments/pay.js';
import { refundPayment } from '../../src/payments/refund.js';
import { createWorker } from '../../src/worker/index.js';
import { freePort } from '../mcp/helpers.js';
import { CLI } from '../support/cli.js';
import { createFixture, type Fixture, payThroughEngine, refundRows } from '../support/fixture.js';

describe('an idempotency key after a crash between phases', () => {
  let f: Fixture;
  let dataDir: string;
  let env: Record<string, string>;
  const clients: Client[] = [];

  async function connect(extra: Record<string, string> = {}): Promise<Client> {
    const client = new Client({ name: 'idempotency-crash', version: '1.0.0' });
    await client.connect(
      new StdioClientTransport({
        command: process.execPath,
        args: [CLI, 'mcp'],
        env: { ...env, PAYGATE_AGENT_KEY: f.agentKeySecret, ...extra },
        stderr: 'ignore',
      }),
    );
    clients.push(client);
    return client;
  }

  beforeAll(async () => {
    f = await createFixture({ slug: 'idem-crash' });
    await f.addMethod({ rail: 'stripe', token: 'pm_card_visa', brand: 'visa', last4: '4242' });
    await f.addInvoice('INV-IC-1', 42_00);
    dataDir = await mkdtemp(path.join(tmpdir(), 'paygate-idem-'));
    env = {
      PATH: process.env.PATH ?? '',
      HOME: process.env.HOME ?? '',
      DATABASE_URL: f.t.url,
      PAYGATE_DATA_DIR: dataDir,
      PAYGATE_LOG_LEVEL: 'warn',
      PAYGATE_SECRET: 'test-secret',
      PAYGATE_SANDBOX_STRIPE_URL: f.sandbox.stripeUrl,
      PAYGATE_SANDBOX_PAYPAL_URL: f.sandbox.paypalUrl,
      PAYGATE_PUBLIC_URL: `http://127.0.0.1:${await freePort()}`,
    };
  });
  afterAll(async () => {
    for (const c of clients) await c.close().catch(() => {});
    await f?.close();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  it('same key after the crash and the reconciler: an answer about the one payment, never a second charge', async () => {
    const args = { invoice: 'INV-IC-1', amount: '42.00', currency: 'USD', method: 'stripe' };
    const ask = (await payInvoice(f.deps, { agentKey: f.agentKey }, args)) as ApprovalRequired;
    const token = await f.approveAs(f.admin, ask.approval_id);

    const dying = await connect({ PAYGATE_CRASH_AT: 'after_provider_call:1' });
    await expect(
      dying.callTool({
        name: 'pay_invoice',
        arguments: { ...args, approval_token: token, idempotency_key: 'k-crash-1' },
      }),
    ).rejects.toThrow();
    const { rows } = await f.t.db.withSystem((c) =>
      c.query<{ id: string; status: string }>('SELECT id, status FROM payments'),
    );
    expect(rows).toHaveLength(1);
    expect(f.sandbox.ledger.charges(rows[0]!.id)).toHaveLength(1);

    // The reconciler (a worker pass past the lease) resolves the charged payment.
    await new Promise((r) => setTimeout(r, 500));
    const pass = await createWorker(f.deps, { clock: () => new Date(Date.now() + 10 * 60_000) }).runOnce();
    expect(pass.errors).toBe(0);
    const after = await f.t.db.withSystem((c) =>
      c.query<{ status: string }>('SELECT status FROM payments WHERE id = $1', [rows[0]!.id]),
    );
    expect(after.rows[0]!.status).toBe('succeeded');

    // The agent's retry, as its client would: same arguments, same key, in a fresh process.
    const retry = await connect();
    const answer = (await retry.callTool({
      name: 'pay_invoice',
      arguments: { ...args, approval_token: token, idempotency_key: 'k-crash-1' },
    })) as { isError?: boolean; structuredContent?: Record<string, unknown> };
    expect(f.sandbox.ledger.charges(rows[0]!.id)).toHaveLength(1);
    // The answer the first call would have given: the one payment, paid.
    expect(answer.isError, JSON.stringify(answer.structuredContent)).toBeFalsy();
    expect(answer.structuredContent).toMatchObject({
      success: true,
      status: 'paid',
      payment_id: rows[0]!.id,
    });
  }, 120_000);

  it('a key whose call died before it paid anything: "in progress" at first, then "interrupted", never a charge', async () => {
    await f.addInvoice('INV-IC-2', 17_00);
    const args = { invoice: 'INV-IC-2', amount: '17.00', currency: 'USD', method: 'stripe' };
    const ask = (await payInvoice(f.deps, { agentKey: f.agentKey }, args)) as ApprovalRequired;
    const token = await f.approveAs(f.admin, ask.approval_id);
    // What a process that died right after claiming the key leaves: the claim, and nothing else.
    const claim = (minutesAgo: number) =>
      f.t.db.withTenant(f.tenant.id, (c) =>
        c.query(
          `INSERT INTO idempotency_keys (tenant_id, agent_key_id, key, action, request_digest, created_at)
           VALUES ($1, $2, $3, 'pay_invoice', $4, now() - make_interval(mins => $5))
           ON CONFLICT (tenant_id, agent_key_id, key) DO UPDATE SET created_at = EXCLUDED.created_at`,
          [f.tenant.id, f.agentKey.id, 'k-died-early', requestDigest('pay_invoice', args), minutesAgo],
        ),
      );
    const retry = () =>
      payInvoice(
        f.deps,
        { agentKey: f.agentKey },
        { ...args, approval_token: token, idempotency_key: 'k-died-early' },
      );
    await claim(1);
    await expect(retry()).rejects.toMatchObject({ code: 'request_in_progress', retryable: true });
    await claim(30);
    await expect(retry()).rejects.toMatchObject({ code: 'request_interrupted', retryable: false });
    const { rows } = await f.t.db.withSystem((c) =>
      c.query("SELECT 1 FROM payments p JOIN invoices i ON i.id = p.invoice_id WHERE i.number = 'INV-IC-2'"),
    );
    expect(rows).toHaveLength(0);
    // The approval was not used up: a new key pays it.
    const paid = await payInvoice(
      f.deps,
      { agentKey: f.agentKey },
      { ...args, approval_token: token, idempotency_key: 'k-new' },
    );
    expect(paid).toMatchObject({ status: 'paid' });
  });

  it('a call that fails after its phase 1 keeps its key: the retry answers with its payment, not a fresh call', async () => {
    const args = { invoice: 'INV-IC-3', amount: '23.00', currency: 'USD', method: 'stripe' };
    await f.addInvoice('INV-IC-3', 23_00);
    const ask = (await payInvoice(f.deps, { agentKey: f.agentKey }, args)) as ApprovalRequired;
    const token = await f.approveAs(f.admin, ask.approval_id);
    // Paid without a key, then the same payment linked to a key whose call then failed (a database error
    // in its phase 3, say): what withIdempotency sees when the call throws after phase 1.
    const paid = (await payInvoice(f.deps, { agentKey: f.agentKey }, { ...args, approval_token: token })) as {
      payment_id: string;
    };
    const scope = { tenantId: f.tenant.id, agentKeyId: f.agentKey.id, key: 'k-failed-late' };
    const digest = requestDigest('pay_invoice', args);
    await expect(
      withIdempotency(f.deps, { agentKey: f.agentKey }, 'pay_invoice', scope.key, digest, async () => {
        await f.t.db.withTenant(f.tenant.id, (c) =>
          linkIdempotencyKey(c, scope, { paymentId: paid.payment_id }),
        );
        throw new Error('the database went away in phase 3');
      }),
    ).rejects.toThrow(/went away/);
    // The retry, 20 minutes on (the call is over: no "in progress"), answers with that payment.
    await f.t.db.withTenant(f.tenant.id, (c) =>
      c.query(
        "UPDATE idempotency_keys SET created_at = now() - interval '20 minutes' WHERE tenant_id = $1 AND key = $2",
        [f.tenant.id, scope.key],
      ),
    );
    const retry = await payInvoice(
      f.deps,
      { agentKey: f.agentKey },
      { ...args, approval_token: token, idempotency_key: scope.key },
    );
    expect(retry).toMatchObject({ success: true, status: 'paid', payment_id: paid.payment_id });
  });

  it('a refund whose process died after the provider call: the retry with its key answers with that refund, never a second one', async () => {
    const paid = await payThroughEngine(f, f.agentKey, {
      invoice: 'INV-IC-4',
      amountMinor: 30_00,
      method: 'stripe',
    });
    const args = { payment: paid.payment_id, amount: '12.00', reason: 'returned goods' };
    const ask = (await refundPayment(f.deps, { agentKey: f.agentKey }, args)) as ApprovalRequired;
    const token = await f.approveAs(f.admin, ask.approval_id);
    const keyed = { ...args, approval_token: token, idempotency_key: 'k-refund-crash' };

    // Stripe made the refund; the process died before phase 3 recorded it.
    const dying = await connect({ PAYGATE_CRASH_AT: 'after_refund_call:1' });
    await expect(dying.callTool({ name: 'refund_payment', arguments: keyed })).rejects.toThrow();
    const [made] = await refundRows(f, paid.payment_id);
    expect(made).toMatchObject({ status: 'pending', amount_minor: 12_00, provider_reference: null });
    expect(f.sandbox.ledger.totalRefunded(paid.payment_id)).toBe(12_00);

    const retry = () => refundPayment(f.deps, { agentKey: f.agentKey }, keyed);
    // At once: the first call may still be in its provider call.
    await expect(retry()).rejects.toMatchObject({ code: 'request_in_progress', retryable: true });
    // Past the 10 minutes: the call is over; its answer is its refund as it stands, pending.
    await f.t.db.withTenant(f.tenant.id, (c) =>
      c.query(
        "UPDATE idempotency_keys SET created_at = now() - interval '20 minutes' WHERE tenant_id = $1 AND key = $2",
        [f.tenant.id, keyed.idempotency_key],
      ),
    );
    expect(await retry()).toMatchObject({
      success: true,
      payment_id: paid.payment_id,
      refund_id: made!.id,
      refund_status: 'pending',
      refund_amount: '12.00',
    });

    // The worker sends the refund again under its own key (Stripe replays it) and records it.
    const pass = await createWorker(f.deps, { clock: () => new Date(Date.now() + 10 * 60_000) }).runOnce();
    expect(pass.errors).toBe(0);
    expect(await retry()).toMatchObject({
      success: true,
      status: 'partially_refunded',
      refund_id: made!.id,
      refund_status: 'succeeded',
    });
    expect(await refundRows(f, paid.payment_id)).toHaveLength(1);
    expect(f.sandbox.ledger.totalRefunded(paid.payment_id)).toBe(12_00);
  }, 120_000);

  it('a schedule whose process died after its phase 1: the retry with its key answers with that schedule, never a refusal', async () => {
    await f.addInvoice('INV-IC-5', 64_00);
    const date = addDays(todayIn(f.tenant.timezone), 5);
    const args = {
      invoice: 'INV-IC-5',
      amount: '64.00',
      currency: 'USD',
      method: 'stripe',
      scheduled_date: date,
    };
    const ask = (await schedulePayment(f.deps, { agentKey: f.agentKey }, args)) as ApprovalRequired;
    const token = await f.approveAs(f.admin, ask.approval_id);
    const keyed = { ...args, approval_token: token, idempotency_key: 'k-schedule-crash' };

    // The schedule committed (and the token with it); the process died before the key had its answer.
    const dying = await connect({ PAYGATE_CRASH_AT: 'after_phase1:1' });
    await expect(dying.callTool({ name: 'schedule_payment', arguments: keyed })).rejects.toThrow();
    const schedules = async () =>
      (
        await f.t.db.withSystem((c) =>
          c.query<{ id: string; status: string }>(
            "SELECT s.id, s.status FROM scheduled_payments s JOIN invoices i ON i.id = s.invoice_id WHERE i.number = 'INV-IC-5'",
          ),
        )
      ).rows;
    const [made] = await schedules();
    expect(made).toMatchObject({ status: 'scheduled' });

    // The agent's retry, as its client would: same arguments, same key, in a fresh process; at once and
    // long after, it gets the schedule its first call made, as that call would have answered.
    const retry = await connect();
    const call = async () =>
      (await retry.callTool({ name: 'schedule_payment', arguments: keyed })) as {
        isError?: boolean;
        structuredContent?: Record<string, unknown>;
      };
    const expected = {
      success: true,
      status: 'scheduled',
      payment_id: null,
      scheduled_payment_id: made!.id,
      scheduled_date: date,
      invoice_number: 'INV-IC-5',
      amount: '64.00',
      amount_minor: 64_00,
      currency: 'USD',
      payment_method: 'stripe',
      approved_by: 'admin@example.com',
    };
    const first = await call();
    expect(first.isError, JSON.stringify(first.structuredContent)).toBeFalsy();
    expect(first.structuredContent).toMatchObject(expected);
    await f.t.db.withTenant(f.tenant.id, (c) =>
      c.query(
        "UPDATE idempotency_keys SET created_at = now() - interval '20 minutes' WHERE tenant_id = $1 AND key = $2",
        [f.tenant.id, keyed.idempotency_key],
      ),
    );
    const later = await call();
    expect(later.isError, JSON.stringify(later.structuredContent)).toBeFalsy();
    expect(later.structuredContent).toEqual(first.structuredContent);
    expect(await schedules()).toHaveLength(1);
  }, 120_000);
});
