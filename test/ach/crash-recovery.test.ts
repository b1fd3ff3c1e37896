/**
 * ACH (NACHA) payments and files across a crash. A payment whose process dies between phase 1 and
 * phase 3 (a real `paygate worker --once` or `paygate mcp` process SIGKILLed through PAYGATE_CRASH_AT)
 * is queued by the reconciler and goes out in the next file; a file recorded by an export whose process
 * died before writing it is not settled by silence, raises an alert, and settles only once written.
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { recordAchExport } from '../../src/ach/export.js';
import {
  type AchDeps,
  exportAchFile,
  setAchSettings,
  settleAchPayments,
  UNWRITTEN_FILE_ALERT_AFTER_MS,
  writeAchFile,
} from '../../src/ach/index.js';
import { createSealer } from '../../src/directory/encryption.js';
import { listAlerts } from '../../src/payments/alerts.js';
import { type ApprovalRequired, payInvoice } from '../../src/payments/pay.js';
import { recordProviderAnswer } from '../../src/payments/phases.js';
import { createWorker } from '../../src/worker/index.js';
import { freePort } from '../mcp/helpers.js';
import { CLI } from '../support/cli.js';
import { createFixture, type Fixture } from '../support/fixture.js';
import { envFor, runPaygate, scheduleApproved } from '../worker/support.js';
import { odfiSettings, payByAch } from './support.js';

async function waitForSessionsToEnd(f: Fixture, application = 'paygate-worker'): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const { rows } = await f.t.db.withSystem((c) =>
      c.query<{ n: number }>(
        'SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1 AND datname = current_database()',
        [application],
      ),
    );
    if (rows[0]!.n === 0) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`the killed ${application} process still has database sessions`);
}

describe('ACH payments and files across a crash', () => {
  let f: Fixture;
  let deps: AchDeps;
  let outDir: string;
  beforeAll(async () => {
    f = await createFixture({ slug: 'achcrash' });
    deps = { db: f.t.db, sealer: createSealer('test-secret'), onAlert: f.deps.onAlert };
    outDir = await fs.mkdtemp(path.join(os.tmpdir(), 'ach-crash-'));
    await f.addMethod({ rail: 'ach', token: 'nacha:operating', provider: 'nacha', label: 'Operating' });
    await setAchSettings(f.t.db, f.tenant.id, f.admin, deps.sealer, odfiSettings);
  });
  afterAll(async () => {
    await fs.rm(outDir, { recursive: true, force: true });
    await f?.close();
  });

  it('a scheduled ACH payment whose worker was killed after phase 1 is queued by the reconciler and exported', async () => {
    await f.addInvoice('INV-CRASH-1', 321_00);
    const scheduledId = await scheduleApproved(f, f.agentKey, 'INV-CRASH-1', '321.00', 'ach');
    const crashed = await runPaygate(['worker', '--once'], {
      ...envFor(f),
      PAYGATE_CRASH_AT: 'after_phase1:1',
    });
    expect(crashed.signal, crashed.stderr).toBe('SIGKILL');
    await waitForSessionsToEnd(f);

    // Restarted workers, clocks past every lease and check (minutes, hours, a day later).
    for (const ahead of [10 * 60_000, 2 * 3600_000, 26 * 3600_000]) {
      const summary = await createWorker(f.deps, { clock: () => new Date(Date.now() + ahead) }).runOnce();
      expect(summary.errors).toBe(0);
    }
    const payment = async () =>
      (
        await f.t.db.withSystem((c) =>
          c.query<{ id: string; status: string; recovery_point: string; provider_reference: string | null }>(
            'SELECT id, status, recovery_point, provider_reference FROM payments WHERE scheduled_payment_id = $1',
            [scheduledId],
          ),
        )
      ).rows;
    const before = await payment();
    expect(before).toHaveLength(1);

    const result = await exportAchFile(deps, f.tenant.id, f.admin, { outDir });
    const after = (await payment())[0]!;
    const schedule = (
      await f.t.db.withSystem((c) =>
        c.query<{ status: string }>('SELECT status FROM scheduled_payments WHERE id = $1', [scheduledId]),
      )
    ).rows[0]!;
    // It went out in the file: the approved payment is made (before the fix it stayed at `started`,
    // which no export takes, and its schedule `running`, for good).
    const exported =
      result.file !== null && after.provider_reference !== null && /^\d{15}$/.test(after.provider_reference);
    const failedWithAlert = after.status === 'failed';
    expect(
      { exported, failedWithAlert, payment: after, schedule: schedule.status },
      `the crashed ACH payment is neither in a file nor failed: ${JSON.stringify({ after, schedule, before })}`,
    ).toMatchObject({ exported: true });
    // In its file it waits for settlement or a return: the worker has no provider to ask about it.
    const later = await createWorker(f.deps, { clock: () => new Date(Date.now() + 3 * 3600_000) }).runOnce();
    expect(later.reconciled.checked).toBe(0);
  }, 120_000);

  it('export committed but the file never written (crash before the write): settlement does not call it paid', async () => {
    await f.addInvoice('INV-UNWRITTEN-1', 654_00);
    const paymentId = await payByAch(f, 'INV-UNWRITTEN-1', '654.00');
    // The export's transaction commits; the process dies before writeAchFile (documented crash point).
    const { file } = await recordAchExport(deps, f.tenant.id, f.admin, new Date());
    expect(file).not.toBeNull();
    const written = await f.t.db.withSystem((c) =>
      c.query<{ written_path: string | null; return_window_ends: string }>(
        "SELECT written_path, to_char(return_window_ends, 'YYYY-MM-DD') AS return_window_ends FROM ach_files WHERE id = $1",
        [file!.ach_file_id],
      ),
    );
    expect(written.rows[0]!.written_path).toBeNull();
    // The worker's settlement pass, well after the return window.
    const later = new Date(`${written.rows[0]!.return_window_ends}T12:00:00Z`);
    later.setUTCDate(later.getUTCDate() + 3);
    await settleAchPayments(f.t.db, later, { tenantId: f.tenant.id });
    const { rows } = await f.t.db.withSystem((c) =>
      c.query<{ status: string; invoice_status: string }>(
        'SELECT p.status, i.status AS invoice_status FROM payments p JOIN invoices i ON i.id = p.invoice_id WHERE p.id = $1',
        [paymentId],
      ),
    );
    // No file ever left paygate, so no money reached the vendor: the invoice must not be recorded paid.
    expect(rows[0]).not.toMatchObject({ status: 'succeeded', invoice_status: 'paid' });
  });
  it('a pay-now ACH payment whose `paygate mcp` process died before phase 3 is queued by the reconciler and exported', async () => {
    await f.addInvoice('INV-CRASH-NOW', 432_10);
    const args = { invoice: 'INV-CRASH-NOW', amount: '432.10', currency: 'USD', method: 'ach' };
    const ask = (await payInvoice(f.deps, { agentKey: f.agentKey }, args)) as ApprovalRequired;
    const token = await f.approveAs(f.admin, ask.approval_id);
    const dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'ach-crash-mcp-'));
    const client = new Client({ name: 'ach-crash', version: '1.0.0' });
    try {
      await client.connect(
        new StdioClientTransport({
          command: process.execPath,
          args: [CLI, 'mcp'],
          env: {
            PATH: process.env.PATH ?? '',
            HOME: process.env.HOME ?? '',
            DATABASE_URL: f.t.url,
            PAYGATE_DATA_DIR: dataDir,
            PAYGATE_LOG_LEVEL: 'warn',
            PAYGATE_SECRET: 'test-secret',
            PAYGATE_SANDBOX_STRIPE_URL: f.sandbox.stripeUrl,
            PAYGATE_SANDBOX_PAYPAL_URL: f.sandbox.paypalUrl,
            PAYGATE_PUBLIC_URL: `http://127.0.0.1:${await freePort()}`,
            PAYGATE_AGENT_KEY: f.agentKeySecret,
            PAYGATE_CRASH_AT: 'after_provider_call:1',
          },
          stderr: 'ignore',
        }),
      );
      // The process dies after the gateway queued the payment, before phase 3 recorded it.
      await expect(
        client.callTool({ name: 'pay_invoice', arguments: { ...args, approval_token: token } }),
      ).rejects.toThrow();
    } finally {
      await client.close().catch(() => {});
      await fs.rm(dataDir, { recursive: true, force: true });
    }
    const row = async () =>
      (
        await f.t.db.withSystem((c) =>
          c.query<{ id: string; status: string; recovery_point: string; provider_reference: string | null }>(
            `SELECT p.id, p.status, p.recovery_point, p.provider_reference FROM payments p JOIN invoices i ON i.id = p.invoice_id
             WHERE i.number = 'INV-CRASH-NOW'`,
          ),
        )
      ).rows;
    expect((await row()).map((r) => [r.status, r.recovery_point])).toEqual([['processing', 'started']]);

    // A restarted worker past the lease: the reconciler finishes phase 3 (queued, nothing sent yet).
    const pass = await createWorker(f.deps, { clock: () => new Date(Date.now() + 10 * 60_000) }).runOnce();
    expect(pass.errors).toBe(0);
    expect((await row())[0]).toMatchObject({ status: 'processing', recovery_point: 'provider_called' });

    const result = await exportAchFile(deps, f.tenant.id, f.admin, { outDir });
    const after = (await row())[0]!;
    expect(result.file?.entry_count).toBe(1);
    expect(after.provider_reference).toMatch(/^\d{15}$/);
  }, 120_000);

  it('a late phase 3 (the slow original process) does not replace the trace number an export assigned', async () => {
    await f.addInvoice('INV-LATE-P3', 12_34);
    const paymentId = await payByAch(f, 'INV-LATE-P3', '12.34');
    await exportAchFile(deps, f.tenant.id, f.admin, { outDir });
    const reference = async () =>
      (
        await f.t.db.withSystem((c) =>
          c.query<{ provider_reference: string }>('SELECT provider_reference FROM payments WHERE id = $1', [
            paymentId,
          ]),
        )
      ).rows[0]!.provider_reference;
    const trace = await reference();
    expect(trace).toMatch(/^\d{15}$/);
    await recordProviderAnswer(f.deps, f.tenant.id, paymentId, {
      outcome: { status: 'processing', providerReference: `nacha:${paymentId}` },
    });
    expect(await reference()).toBe(trace);
  });

  it('a file still unwritten well after its export raises one critical alert; written late, it settles on the later window', async () => {
    await f.addInvoice('INV-UNWRITTEN-2', 77_00);
    const paymentId = await payByAch(f, 'INV-UNWRITTEN-2', '77.00');
    const exportedAt = new Date();
    const { file } = await recordAchExport(deps, f.tenant.id, f.admin, exportedAt);
    const fileId = file!.ach_file_id;
    const unwrittenAlerts = async () =>
      (await f.t.db.withTenant(f.tenant.id, (c) => listAlerts(c))).filter(
        (a) => a.kind === 'ach_file_unwritten' && a.message.includes(fileId),
      );
    // Not yet overdue: no alert.
    await settleAchPayments(f.t.db, exportedAt, { tenantId: f.tenant.id });
    expect(await unwrittenAlerts()).toEqual([]);
    // Overdue: one alert, however many passes.
    const overdue = new Date(exportedAt.getTime() + UNWRITTEN_FILE_ALERT_AFTER_MS + 60_000);
    const first = await settleAchPayments(f.t.db, overdue, { tenantId: f.tenant.id });
    await settleAchPayments(f.t.db, new Date(overdue.getTime() + 3600_000), { tenantId: f.tenant.id });
    expect(first.unwritten.map((u) => u.ach_file_id)).toContain(fileId);
    const alerts = await unwrittenAlerts();
    expect(alerts).toHaveLength(1);
    expect(alerts[0]).toMatchObject({ severity: 'critical' });

    // An admin writes it a week later: the bank has it only from then, so the return window moves.
    const weekLater = new Date(exportedAt.getTime() + 7 * 24 * 3600_000);
    const written = await writeAchFile(deps, f.tenant.id, f.admin, fileId, outDir, weekLater);
    expect(written.file.return_window_ends > file!.return_window_ends).toBe(true);
    const status = async () =>
      (
        await f.t.db.withSystem((c) =>
          c.query<{ status: string }>('SELECT status FROM payments WHERE id = $1', [paymentId]),
        )
      ).rows[0]!.status;
    const oldWindowOver = new Date(`${file!.return_window_ends}T12:00:00Z`);
    oldWindowOver.setUTCDate(oldWindowOver.getUTCDate() + 2);
    if (oldWindowOver < new Date(`${written.file.return_window_ends}T00:00:00Z`)) {
      await settleAchPayments(f.t.db, oldWindowOver, { tenantId: f.tenant.id });
      expect(await status()).toBe('processing');
    }
    const newWindowOver = new Date(`${written.file.return_window_ends}T12:00:00Z`);
    newWindowOver.setUTCDate(newWindowOver.getUTCDate() + 2);
    await settleAchPayments(f.t.db, newWindowOver, { tenantId: f.tenant.id });
    expect(await status()).toBe('succeeded');
  });
});
