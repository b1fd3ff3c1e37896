/**
 * The NACHA workflow end to end on a real database: ACH payments through the engine (approval, token,
 * pay), export to a file, the bank's returns and notification of change from moov-io's reference files,
 * settlement after the return window, and a late return after settlement.
 *
 * Trace numbers are not patched: a fresh database's trace sequence for an ODFI starts at 1, so with the
 * tenant's ODFI set to 091400606 the first file's entries carry 091400600000001, ...02, ...03: the
 * original traces return-WEB.ach returns (R01 for ...01, R03 for ...03). The tenant then moves to the
 * ODFI 121042882, whose first trace 121042880000001 is the one cor-example.ach corrects (C01).
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { approveCorrection, listCorrections } from '../../src/ach/corrections.js';
import { listAchFiles } from '../../src/ach/files.js';
import {
  type AchDeps,
  exportAchFile,
  importAchReturns,
  setAchSettings,
  settleAchPayments,
} from '../../src/ach/index.js';
import { verifyAuditLog } from '../../src/audit/verify.js';
import { openBankAccount } from '../../src/directory/counterparties.js';
import { createSealer } from '../../src/directory/encryption.js';
import { readAndValidate } from '../../src/gateways/nacha/validator.js';
import { listAlerts } from '../../src/payments/alerts.js';
import { getPayment } from '../../src/payments/payments.js';
import { executeScheduledPayment } from '../../src/payments/scheduled.js';
import { refPath } from '../nacha/support.js';
import { createFixture, type Fixture } from '../support/fixture.js';
import { odfiSettings, payByAch } from './support.js';

const RETURN_WEB = refPath('test/testdata/return-WEB.ach');
const COR_EXAMPLE = refPath('test/testdata/cor-example.ach');

describe('NACHA workflow: export, returns, notifications of change, settlement', () => {
  let f: Fixture;
  let deps: AchDeps;
  let outDir: string;
  const ids: Record<string, string> = {};

  const payment = async (id: string) => (await f.t.db.withTenant(f.tenant.id, (c) => getPayment(c, id)))!;
  const invoiceStatus = async (number: string) =>
    (
      await f.t.db.withTenant(f.tenant.id, (c) =>
        c.query<{ status: string }>('SELECT status FROM invoices WHERE number = $1', [number]),
      )
    ).rows[0]!.status;
  const alerts = () => f.t.db.withTenant(f.tenant.id, (c) => listAlerts(c));

  beforeAll(async () => {
    f = await createFixture();
    deps = { db: f.t.db, sealer: createSealer('test-secret'), onAlert: f.deps.onAlert };
    outDir = await fs.mkdtemp(path.join(os.tmpdir(), 'paygate-ach-'));
    await f.addMethod({
      rail: 'ach',
      token: 'nacha:operating',
      provider: 'nacha',
      label: 'Operating account',
    });
    await setAchSettings(f.t.db, f.tenant.id, f.admin, deps.sealer, odfiSettings);
    // The amounts return-WEB.ach returns: 123.54 (R01) and 45.65 (R03).
    await f.addInvoice('INV-ACH-A', 123_54);
    await f.addInvoice('INV-ACH-B', 1_000_00);
    await f.addInvoice('INV-ACH-C', 45_65);
    await f.addInvoice('INV-ACH-D', 250_00);
  });
  afterAll(async () => {
    await fs.rm(outDir, { recursive: true, force: true });
    await f.close();
  });

  it('an ACH payment waits, processing, until a file is exported', async () => {
    ids.A = await payByAch(f, 'INV-ACH-A', '123.54');
    ids.B = await payByAch(f, 'INV-ACH-B', '1000.00');
    ids.C = await payByAch(f, 'INV-ACH-C', '45.65');
    const a = await payment(ids.A);
    expect(a).toMatchObject({ status: 'processing', provider: 'nacha', providerReference: `nacha:${ids.A}` });
    expect(await invoiceStatus('INV-ACH-A')).toBe('processing');
  });

  it('export writes one valid file with every waiting payment; a second export finds nothing', async () => {
    const result = await exportAchFile(deps, f.tenant.id, f.admin, { outDir });
    expect(result.excluded).toEqual([]);
    expect(result.file).toMatchObject({
      entry_count: 3,
      batch_count: 1,
      total_credit_minor: 123_54 + 1_000_00 + 45_65,
      total_credit: '1169.19',
      total_debit_minor: 0,
      file_id_modifier: 'A',
    });
    expect(path.dirname(result.path!)).toBe(path.resolve(outDir));
    const bytes = await fs.readFile(result.path!);
    expect((await fs.stat(result.path!)).mode & 0o777).toBe(0o600);
    const { file, issues } = readAndValidate(bytes, result.path!);
    expect(issues).toEqual([]);
    const entries = file.batches.flatMap((b) => b.entries);
    expect(file.batches[0]!.header).toMatchObject({
      standardEntryClassCode: 'CCD',
      serviceClassCode: '220',
      companyName: 'ACME CORP',
      companyIdentification: '1234567890',
    });
    // Each payment is one credit to the vendor's account, under the trace now its provider reference.
    const expected = [
      [ids.A, 123_54, '091400600000001'],
      [ids.B, 1_000_00, '091400600000002'],
      [ids.C, 45_65, '091400600000003'],
    ] as const;
    for (const [id, amount, trace] of expected) {
      const p = await payment(id!);
      expect(p.providerReference).toBe(trace);
      expect(p.status).toBe('processing');
      const entry = entries.find((e) => e.traceNumber === trace)!;
      expect(entry).toMatchObject({ amountMinor: amount, transactionCode: '22' });
      expect(entry.accountNumber.trim()).toBe('000123456789');
      expect(entry.rdfiIdentification + entry.checkDigit).toBe('110000000');
      expect(entry.name).toBe('Acme Supplies');
    }
    expect(entries).toHaveLength(3);
    const stored = await f.t.db.withTenant(f.tenant.id, (c) =>
      c.query<{ ach_file_id: string }>('SELECT DISTINCT ach_file_id FROM payments WHERE provider = $1', [
        'nacha',
      ]),
    );
    expect(stored.rows.map((r) => r.ach_file_id)).toEqual([result.file!.ach_file_id]);

    const again = await exportAchFile(deps, f.tenant.id, f.admin, { outDir });
    expect(again).toEqual({ file: null, path: null, excluded: [], deferred: 0 });
    expect(await fs.readdir(outDir)).toHaveLength(1);
  });

  it('return-WEB.ach: R01 fails and reschedules its payment, R03 asks for new bank details', async () => {
    const result = await importAchReturns(deps, f.tenant.id, f.admin, {
      bytes: await fs.readFile(RETURN_WEB),
      fileName: RETURN_WEB,
    });
    expect(
      result.returns.map((r) => [r.return_code, r.original_trace_number, r.payment_id, r.outcome]),
    ).toEqual([
      ['R01', '091400600000001', ids.A, 'failed'],
      ['R03', '091400600000003', ids.C, 'failed'],
    ]);
    const a = await payment(ids.A!);
    expect(a).toMatchObject({
      status: 'failed',
      failureCode: 'insufficient_funds',
      failureProviderCode: 'R01',
    });
    // R01 follows the seed's rule: rescheduled for the next business day, with an alert.
    expect(await invoiceStatus('INV-ACH-A')).toBe('scheduled');
    const scheduled = await f.t.db.withTenant(f.tenant.id, (c) =>
      c.query<{ id: string; status: string; reschedule_count: number }>(
        'SELECT id, status, reschedule_count FROM scheduled_payments WHERE invoice_id = $1',
        [a.invoiceId],
      ),
    );
    expect(scheduled.rows).toEqual([expect.objectContaining({ status: 'scheduled', reschedule_count: 1 })]);
    ids.scheduledA = scheduled.rows[0]!.id;
    const c = await payment(ids.C!);
    expect(c).toMatchObject({
      status: 'failed',
      failureCode: 'payment_method_invalid',
      failureProviderCode: 'R03',
    });
    expect(await invoiceStatus('INV-ACH-C')).toBe('approved');
    expect((await payment(ids.B!)).status).toBe('processing');
    const kinds = (await alerts()).map((x) => [x.kind, x.payment_id]);
    expect(kinds).toContainEqual(['payment_reschedule', ids.A]);
    expect(kinds).toContainEqual(['payment_request_payment_method', ids.C]);
  });

  it('importing the same return file again changes nothing', async () => {
    const before = (await alerts()).length;
    const result = await importAchReturns(deps, f.tenant.id, f.admin, {
      bytes: await fs.readFile(RETURN_WEB),
      fileName: RETURN_WEB,
    });
    expect(result.returns.map((r) => r.outcome)).toEqual(['duplicate', 'duplicate']);
    expect((await alerts()).length).toBe(before);
  });

  it('only an admin imports returns, and an invalid file applies nothing', async () => {
    await expect(
      importAchReturns(deps, f.tenant.id, f.approver, {
        bytes: await fs.readFile(RETURN_WEB),
        fileName: 'r.ach',
      }),
    ).rejects.toMatchObject({ code: 'admin_required' });
    const bad = refPath('test/testdata/ppd-debit-invalid-entryDetail-checkDigit.ach');
    await expect(
      importAchReturns(deps, f.tenant.id, f.admin, { bytes: await fs.readFile(bad), fileName: bad }),
    ).rejects.toMatchObject({ code: 'ach_file_invalid', issues: [expect.objectContaining({ line: 3 })] });
  });

  it('settles the unreturned payment only once its return window has ended', async () => {
    const [file] = await f.t.db.withTenant(f.tenant.id, (c) => listAchFiles(c));
    // The tenant is on UTC: at midnight of the window's last day the window is still open.
    const lastDay = new Date(`${file!.return_window_ends}T00:00:00Z`);
    expect((await settleAchPayments(f.t.db, lastDay)).settled).toEqual([]);
    expect((await payment(ids.B!)).status).toBe('processing');
    const dayAfter = new Date(lastDay.getTime() + 24 * 3600 * 1000);
    const { settled } = await settleAchPayments(f.t.db, dayAfter);
    expect(settled).toEqual([
      {
        tenant_id: f.tenant.id,
        payment_id: ids.B,
        ach_file_id: file!.ach_file_id,
        trace_number: '091400600000002',
      },
    ]);
    expect((await payment(ids.B!)).status).toBe('succeeded');
    expect(await invoiceStatus('INV-ACH-B')).toBe('paid');
    // Failed payments stay failed; a second pass settles nothing more.
    expect((await settleAchPayments(f.t.db, dayAfter)).settled).toEqual([]);
    expect((await payment(ids.A!)).status).toBe('failed');
  });

  it('a return after settlement is recorded and raised as a critical alert; the payment stays paid', async () => {
    // return-WEB.ach with its R03 addenda naming B's trace instead of C's: a late return of B. Only the
    // addenda's original trace changes (it is not part of any control total), so the file stays valid.
    const original = await fs.readFile(RETURN_WEB, 'latin1');
    const late = original.replace('799R03091400600000003', '799R03091400600000002');
    expect(late).not.toBe(original);
    const lateFile = path.join(outDir, 'late-return.ach');
    await fs.writeFile(lateFile, late, 'latin1');
    const result = await importAchReturns(deps, f.tenant.id, f.admin, { bytes: late, fileName: lateFile });
    expect(result.returns.map((r) => [r.return_code, r.payment_id, r.outcome])).toEqual([
      ['R01', ids.A, 'duplicate'],
      ['R03', ids.B, 'after_settlement'],
    ]);
    expect((await payment(ids.B!)).status).toBe('succeeded');
    expect(await invoiceStatus('INV-ACH-B')).toBe('paid');
    const alert = (await alerts()).find((x) => x.kind === 'ach_return_after_settlement')!;
    expect(alert).toMatchObject({ payment_id: ids.B, severity: 'critical', code: 'payment_method_invalid' });
    expect(alert.message).toContain('INV-ACH-B');
  });

  it('cor-example.ach: the NOC becomes a pending correction an admin approves before details change', async () => {
    // The tenant moves to the ODFI of cor-example.ach; its first trace is 121042880000001.
    await setAchSettings(f.t.db, f.tenant.id, f.admin, deps.sealer, {
      odfiRouting: '121042882',
      immediateDestination: '231380104',
    });
    ids.D = await payByAch(f, 'INV-ACH-D', '250.00');
    const exported = await exportAchFile(deps, f.tenant.id, f.admin, { outDir });
    expect(exported.file).toMatchObject({ entry_count: 1, file_id_modifier: 'B' });
    expect((await payment(ids.D)).providerReference).toBe('121042880000001');

    const result = await importAchReturns(deps, f.tenant.id, f.admin, {
      bytes: await fs.readFile(COR_EXAMPLE),
      fileName: COR_EXAMPLE,
    });
    expect(result.returns).toEqual([]);
    expect(result.corrections).toEqual([
      expect.objectContaining({ change_code: 'C01', payment_id: ids.D, outcome: 'proposed' }),
    ]);
    const correctionId = result.corrections[0]!.correction_id!;
    // A NOC is not a return: the payment is untouched.
    expect((await payment(ids.D)).status).toBe('processing');
    const vendorId = (
      await f.t.db.withTenant(f.tenant.id, (c) =>
        c.query<{ id: string }>("SELECT id FROM counterparties WHERE name = 'Acme Supplies'"),
      )
    ).rows[0]!.id;
    const account = () => f.t.db.withTenant(f.tenant.id, (c) => openBankAccount(c, deps.sealer, vendorId));
    expect(await account()).toBe('000123456789');
    const [pending] = await f.t.db.withTenant(f.tenant.id, (c) => listCorrections(c, { status: 'pending' }));
    expect(pending).toMatchObject({
      correction_id: correctionId,
      field: 'account_number',
      corrected_account_last4: '1614',
      current_account_last4: '6789',
    });
    // The corrected account number is stored sealed, never in the clear.
    const raw = await f.t.db.withTenant(f.tenant.id, (c) =>
      c.query<{ row: string }>('SELECT row_to_json(k)::text AS row FROM ach_corrections k'),
    );
    expect(raw.rows[0]!.row).not.toContain('1918171614');
    expect((await alerts()).map((x) => x.kind)).toContain('ach_notification_of_change');

    await expect(approveCorrection(deps, f.tenant.id, f.approver, correctionId)).rejects.toMatchObject({
      code: 'admin_required',
    });
    expect(await account()).toBe('000123456789');
    const approved = await approveCorrection(deps, f.tenant.id, f.admin, correctionId);
    expect(approved).toMatchObject({
      status: 'approved',
      decided_by: 'admin@example.com',
      current_account_last4: '1614',
    });
    expect(await account()).toBe('1918171614');
    await expect(approveCorrection(deps, f.tenant.id, f.admin, correctionId)).rejects.toMatchObject({
      code: 'correction_already_decided',
    });

    // The R01-rescheduled payment runs again (as the worker would) and goes to the corrected account.
    const rerun = await executeScheduledPayment(f.deps, f.tenant.id, ids.scheduledA!);
    expect(rerun).toMatchObject({ status: 'processing', provider: 'nacha' });
    const third = await exportAchFile(deps, f.tenant.id, f.admin, { outDir });
    const { file, issues } = readAndValidate(await fs.readFile(third.path!), third.path!);
    expect(issues).toEqual([]);
    const [entry] = file.batches.flatMap((b) => b.entries);
    expect(entry).toMatchObject({ amountMinor: 123_54, traceNumber: '121042880000002' });
    expect(entry!.accountNumber.trim()).toBe('1918171614');
  });

  it('the audit chain is intact after all of it', async () => {
    const actions = (
      await f.t.db.withTenant(f.tenant.id, (c) =>
        c.query<{ action: string }>('SELECT DISTINCT action FROM audit_log ORDER BY action'),
      )
    ).rows.map((r) => r.action);
    for (const a of [
      'ach.settings_changed',
      'ach_file.created',
      'ach_file.written',
      'payment.submitted',
      'ach.return_received',
      'ach.returns_imported',
      'ach.correction_proposed',
      'ach.correction_approved',
      'payment.succeeded',
      'payment.failed',
    ])
      expect(actions).toContain(a);
    expect((await verifyAuditLog(f.t.db)).ok).toBe(true);
  });
});
