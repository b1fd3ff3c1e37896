/**
 * Crashes inside webhook handling. A real `paygate serve` (the BUILT CLI; `npm run build` first) is
 * SIGKILLed by PAYGATE_CRASH_AT (src/payments/crash-points.ts) while it handles a signed Stripe
 * `payment_intent.succeeded` about an ACH payment that is still `processing`:
 *   in_webhook           the event row committed, not yet applied
 *   in_webhook_apply     applied inside the open transaction (payment changed, event row locked), not committed
 *   after_webhook_apply  applied and committed, Stripe not yet answered
 * Stripe saw no answer, so it delivers the SAME event again; a restarted serve (no hook) takes it. Each
 * time the payment must end succeeded exactly once, its invoice paid, one webhook_events row applied,
 * and the audit chain intact. One variant has two restarted processes take the retry at once (Stripe
 * retrying while a duplicate delivery is in flight): one applies, the other sees a duplicate.
 *
 * The engine (this test process) and every serve process share one database and one Stripe emulator.
 */
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyAuditLog } from '../../src/audit/verify.js';
import { signStripeWebhookForTest } from '../../src/gateways/stripe/webhook.js';
import type { CrashPoint } from '../../src/payments/crash-points.js';
import { CLI } from '../support/cli.js';
import { createFixture, type Fixture, payThroughEngine } from '../support/fixture.js';
import { count, stripeEventFor } from './support.js';

const STRIPE_SECRET = 'whsec_webhook_crash_test_0123456789abcdef';

interface ServeProcess {
  url: string;
  child: ChildProcessWithoutNullStreams;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>;
}

describe('crash inside webhook handling (paygate serve, built CLI)', () => {
  let f: Fixture;
  let dataDir: string;
  const running = new Set<ServeProcess>();

  beforeAll(async () => {
    f = await createFixture({ slug: 'hookcrash' });
    await f.addMethod({ rail: 'ach', token: 'pm_usBankAccount_success', last4: '6789' });
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'paygate-hookcrash-'));
  });
  afterAll(async () => {
    for (const p of running) {
      p.child.kill('SIGTERM');
      await p.exited;
    }
    await f?.close();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  /** `paygate serve --port 0` on the fixture's database and emulator; resolves once it prints its URL. */
  async function startServe(crashAt?: string): Promise<ServeProcess> {
    const child = spawn(process.execPath, [CLI, '--data-dir', dataDir, 'serve', '--port', '0'], {
      env: {
        PATH: process.env.PATH,
        HOME: process.env.HOME,
        PAYGATE_LOG_LEVEL: 'warn',
        PAYGATE_SECRET: 'test-secret',
        DATABASE_URL: f.t.url,
        PAYGATE_SANDBOX_STRIPE_URL: f.sandbox.stripeUrl,
        PAYGATE_SANDBOX_PAYPAL_URL: f.sandbox.paypalUrl,
        STRIPE_WEBHOOK_SECRET: STRIPE_SECRET,
        ...(crashAt ? { PAYGATE_CRASH_AT: crashAt } : {}),
      },
    });
    let stdout = '';
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>(
      (resolve) => child.on('close', (code, signal) => resolve({ code, signal, stderr })),
    );
    const url = await new Promise<string>((resolve, reject) => {
      child.stdout.on('data', (d: Buffer) => {
        stdout += d.toString();
        const line = /^mcp: (http:\/\/127\.0\.0\.1:\d+)\/mcp$/m.exec(stdout);
        if (line) resolve(line[1]!);
      });
      void exited.then((r) => reject(new Error(`serve exited (${r.code ?? r.signal}): ${r.stderr}`)));
    });
    const p = { url, child, exited };
    running.add(p);
    void exited.then(() => running.delete(p));
    return p;
  }

  async function stop(p: ServeProcess): Promise<void> {
    p.child.kill('SIGTERM');
    expect((await p.exited).code).toBe(0);
  }

  /**
   * A killed process's sessions end when PostgreSQL notices the closed socket; until then an open
   * transaction still holds its row locks. Stripe's retry comes later, so wait for them to go.
   */
  async function waitForServeSessionsToEnd(): Promise<void> {
    for (let i = 0; i < 200; i++) {
      const n = await count(
        f,
        "SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = 'paygate-serve' AND datname = current_database()",
      );
      if (n === 0) return;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    throw new Error('the killed serve still has database sessions');
  }

  function deliver(p: ServeProcess, payload: string): Promise<Response> {
    return fetch(`${p.url}/webhooks/stripe`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'stripe-signature': signStripeWebhookForTest(payload, STRIPE_SECRET),
      },
      body: payload,
    });
  }

  async function outcome(p: ServeProcess, payload: string): Promise<unknown> {
    const response = await deliver(p, payload);
    expect(response.status).toBe(200);
    return ((await response.json()) as { outcome: unknown }).outcome;
  }

  const paymentStatus = async (paymentId: string) =>
    (
      await f.t.db.withSystem((c) =>
        c.query<{ status: string }>('SELECT status FROM payments WHERE id = $1', [paymentId]),
      )
    ).rows[0]!.status;

  async function expectSettledOnce(paymentId: string, invoice: string, eventId: string): Promise<void> {
    expect(await paymentStatus(paymentId)).toBe('succeeded');
    expect(
      await count(f, "SELECT count(*) AS n FROM invoices WHERE number = $1 AND status = 'paid'", [invoice]),
    ).toBe(1);
    // One transition to succeeded in the audit trail: applied once, never twice, never lost.
    expect(
      await count(
        f,
        "SELECT count(*) AS n FROM audit_log WHERE action = 'payment.succeeded' AND subject_id = $1",
        [paymentId],
      ),
    ).toBe(1);
    const { rows } = await f.t.db.withSystem((c) =>
      c.query<{ outcome: string; processed: boolean; tenant_id: string }>(
        'SELECT outcome, processed_at IS NOT NULL AS processed, tenant_id FROM webhook_events WHERE provider = $1 AND event_id = $2',
        ['stripe', eventId],
      ),
    );
    expect(rows).toEqual([{ outcome: 'applied', processed: true, tenant_id: f.tenant.id }]);
    const audit = await verifyAuditLog(f.t.db);
    expect(audit.ok, JSON.stringify(audit)).toBe(true);
  }

  const variants: { point: CrashPoint; racingRetry?: boolean }[] = [
    { point: 'in_webhook' },
    { point: 'in_webhook_apply' },
    { point: 'after_webhook_apply' },
    { point: 'in_webhook', racingRetry: true },
    { point: 'in_webhook_apply', racingRetry: true },
  ];

  for (const [n, { point, racingRetry }] of variants.entries()) {
    const title = racingRetry
      ? `${point}: SIGKILL, then two restarted processes take the retry at once: applied once`
      : `${point}: SIGKILL, restart, the same event again: applied exactly once`;
    it(title, async () => {
      const invoice = `INV-HC-${n}`;
      const eventId = `evt_hookcrash_${n}`;
      const paid = await payThroughEngine(f, f.agentKey, {
        invoice,
        amountMinor: 1_000_00 + n,
        method: 'ach',
      });
      expect(paid.status).toBe('processing');
      // The bank settles at the emulator; the webhook is how we hear of it.
      await f.sandbox.stripe.settleAch();
      expect(await paymentStatus(paid.payment_id)).toBe('processing');
      const payload = stripeEventFor(
        'payment_intent.succeeded.json',
        eventId,
        paid.payment_id,
        paid.gateway_reference!,
      );

      const doomed = await startServe(point);
      await expect(deliver(doomed, payload)).rejects.toThrow();
      const died = await doomed.exited;
      expect(died.signal, died.stderr).toBe('SIGKILL');
      await waitForServeSessionsToEnd();
      // What the crash left: committed (after_webhook_apply) or nothing applied at all.
      expect(await paymentStatus(paid.payment_id)).toBe(
        point === 'after_webhook_apply' ? 'succeeded' : 'processing',
      );
      expect(
        await count(
          f,
          'SELECT count(*) AS n FROM webhook_events WHERE event_id = $1 AND processed_at IS NULL',
          [eventId],
        ),
      ).toBe(point === 'after_webhook_apply' ? 0 : 1);

      if (racingRetry) {
        const [one, two] = await Promise.all([startServe(), startServe()]);
        const outcomes = await Promise.all([outcome(one, payload), outcome(two, payload)]);
        expect(outcomes.sort()).toEqual(['applied', 'duplicate']);
        await Promise.all([stop(one), stop(two)]);
      } else {
        const restarted = await startServe();
        expect(await outcome(restarted, payload)).toBe(
          point === 'after_webhook_apply' ? 'duplicate' : 'applied',
        );
        // Stripe may deliver it yet again; still nothing changes.
        expect(await outcome(restarted, payload)).toBe('duplicate');
        await stop(restarted);
      }
      await expectSettledOnce(paid.payment_id, invoice, eventId);
    }, 60_000);
  }
});
