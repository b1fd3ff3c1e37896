/**
 * A refund whose process dies after the provider refunded and before our phase 3
 * (PAYGATE_CRASH_AT=after_refund_call, a real `paygate mcp` process on stdio): the refund row is
 * pending with no provider reference, the money already back with the payer. Nothing may refund it a
 * second time: its amount stays held against further refunds, and the worker (a real `paygate worker`
 * process) re-drives it under the same refund id, so the same idempotency key, and the provider replays
 * its first answer. Judged by the sandbox ledger, for Stripe and PayPal.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { refundPayment } from '../../src/payments/refund.js';
import { CLI } from '../support/cli.js';
import { createFixture, type Fixture, payThroughEngine, refundRows } from '../support/fixture.js';
import { envFor, runPaygate } from './support.js';

describe('a refund killed between its provider call and its phase 3', () => {
  let f: Fixture;
  let dataDir: string;
  beforeAll(async () => {
    f = await createFixture({ slug: 'refund-crash' });
    await f.addMethod({ rail: 'stripe', token: 'pm_card_visa', label: 'Visa', brand: 'visa', last4: '4242' });
    await f.addMethod({ rail: 'paypal', token: 'pp_vault_success', label: 'PayPal' });
    dataDir = await mkdtemp(path.join(tmpdir(), 'paygate-refund-crash-'));
  });
  afterAll(async () => {
    await f?.close();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  it.each(['stripe', 'paypal'] as const)(
    '%s: refunded once, held meanwhile, then recorded by the worker re-driving the same refund id',
    async (rail) => {
      const paid = await payThroughEngine(f, f.agentKey, {
        invoice: `RC-${rail}`,
        amountMinor: 250_00,
        method: rail,
      });
      const caller = { agentKey: f.agentKey };
      const input = { payment: paid.payment_id, reason: 'duplicate invoice' };
      const ask = (await refundPayment(f.deps, caller, input)) as { approval_id: string };
      const token = await f.approveAs(f.admin, ask.approval_id);

      const dying = new Client({ name: 'refund-crash', version: '1.0.0' });
      await dying.connect(
        new StdioClientTransport({
          command: process.execPath,
          args: [CLI, 'mcp'],
          env: {
            ...envFor(f),
            PATH: process.env.PATH ?? '',
            HOME: process.env.HOME ?? '',
            PAYGATE_DATA_DIR: dataDir,
            PAYGATE_LOG_LEVEL: 'warn',
            PAYGATE_AGENT_KEY: f.agentKeySecret,
            PAYGATE_CRASH_AT: 'after_refund_call',
          },
          stderr: 'ignore',
        }),
      );
      await expect(
        dying.callTool({ name: 'refund_payment', arguments: { ...input, approval_token: token } }),
      ).rejects.toThrow();
      await dying.close().catch(() => {});

      // The provider refunded; we recorded only phase 1.
      expect(f.sandbox.ledger.refunds(paid.payment_id, rail)).toHaveLength(1);
      const [crashed] = await refundRows(f, paid.payment_id);
      expect(crashed).toMatchObject({ status: 'pending', amount_minor: 250_00, provider_reference: null });

      // Meanwhile the amount is held: a second refund of it is refused before any human is asked.
      await expect(refundPayment(f.deps, caller, input)).rejects.toMatchObject({
        code: 'payment_fully_refunded',
      });

      // The caller's grace period over (as if a minute had passed), a worker process takes it.
      await f.t.db.withSystem((c) =>
        c.query("UPDATE refunds SET updated_at = now() - interval '2 minutes' WHERE id = $1", [crashed!.id]),
      );
      const worker = await runPaygate(['worker', '--once', '--json'], envFor(f));
      expect(worker.code, worker.stderr).toBe(0);
      expect(JSON.parse(worker.stdout).refunds).toMatchObject({ redriven: 1, succeeded: 1 });

      const refunds = f.sandbox.ledger.refunds(paid.payment_id, rail);
      expect(refunds).toHaveLength(1);
      expect(refunds[0]!.amountMinor).toBe(250_00);
      expect(await refundRows(f, paid.payment_id)).toEqual([
        expect.objectContaining({ id: crashed!.id, status: 'succeeded', provider_reference: refunds[0]!.id }),
      ]);
      const { rows } = await f.t.db.withSystem((c) =>
        c.query<{ n: number }>(
          "SELECT count(*)::int AS n FROM refunds WHERE status = 'succeeded' AND payment_id = $1",
          [paid.payment_id],
        ),
      );
      expect(rows[0]!.n).toBe(1);
    },
    60_000,
  );
});
