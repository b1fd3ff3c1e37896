/**
 * ACH export at the edges: tenant settings the writer cannot write, the trace sequence wrap the docs
 * promise, amounts at the entry field's width, names/ids longer than their fields or not ASCII, and more
 * money than one file's 12-digit control totals hold.
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type AchDeps, exportAchFile, setAchSettings } from '../../src/ach/index.js';
import { addVendor } from '../../src/directory/counterparties.js';
import { createSealer } from '../../src/directory/encryption.js';
import { readAndValidate } from '../../src/gateways/nacha/validator.js';
import { type NachaWriteError, type WriteEntry, writeNacha } from '../../src/gateways/nacha/writer.js';
import { listAlerts } from '../../src/payments/alerts.js';
import { addInvoice } from '../../src/payments/invoices.js';
import { type PaymentConfirmation, payInvoice } from '../../src/payments/pay.js';
import { createFixture, type Fixture } from '../support/fixture.js';
import { odfiSettings, payByAch } from './support.js';

describe('ACH export at the edges', () => {
  let f: Fixture;
  let deps: AchDeps;
  let outDir: string;
  let n = 0;
  const slug = () => `edge${++n}`;

  async function setup(settings: Record<string, unknown> = {}): Promise<void> {
    f = await createFixture({ slug: slug() });
    deps = { db: f.t.db, sealer: createSealer('test-secret'), onAlert: f.deps.onAlert };
    await f.addMethod({ rail: 'ach', token: 'nacha:operating', provider: 'nacha', label: 'Operating' });
    await setAchSettings(f.t.db, f.tenant.id, f.admin, deps.sealer, { ...odfiSettings, ...settings });
  }
  const payments = async () =>
    (
      await f.t.db.withSystem((c) =>
        c.query<{
          id: string;
          status: string;
          failure_code: string | null;
          provider_reference: string | null;
        }>(
          "SELECT id, status, failure_code, provider_reference FROM payments WHERE provider = 'nacha' ORDER BY created_at",
        ),
      )
    ).rows;

  beforeAll(async () => {
    outDir = await fs.mkdtemp(path.join(os.tmpdir(), 'ach-edges-'));
  });
  afterAll(async () => {
    await fs.rm(outDir, { recursive: true, force: true });
  });
  afterEach(async () => {
    await f?.close();
  });

  it('a non-ASCII company name (or other tenant-level text) is refused by ach settings, naming the flag', async () => {
    await setup();
    const cases: [Record<string, string>, string][] = [
      [{ companyName: 'CAFÉ ROYAL' }, '--company-name'],
      [{ entryDescription: 'PAIEMENT É' }, '--entry-description'],
      [{ immediateDestinationName: 'BANQUE ÉTOILE' }, '--immediate-destination-name'],
      [{ immediateOriginName: 'CAFÉ ROYAL' }, '--immediate-origin-name'],
      [{ referenceCode: 'RÉF1' }, '--reference-code'],
    ];
    for (const [change, flag] of cases) {
      await expect(setAchSettings(f.t.db, f.tenant.id, f.admin, deps.sealer, change)).rejects.toThrow(
        new RegExp(`${flag} must be printable ASCII`),
      );
    }
    await expect(
      setAchSettings(f.t.db, f.tenant.id, f.admin, deps.sealer, {
        balanced: true,
        offsetAccountNumber: '123456789',
        offsetAccountName: 'CAFÉ ROYAL',
      }),
    ).rejects.toThrow(/--offset-account-name must be printable ASCII/);
  });

  it('settings stored before that rule: the export is refused as a whole with an alert, no vendor payment failed', async () => {
    await setup();
    // As stored before `ach settings` refused it (the stored form is not re-checked on read).
    await f.t.db.withSystem((c) =>
      c.query(
        `UPDATE tenants SET ach_settings = ach_settings || '{"companyName": "CAFÉ ROYAL"}'::jsonb WHERE id = $1`,
        [f.tenant.id],
      ),
    );
    await f.addInvoice('INV-NA-1', 100_00);
    await f.addInvoice('INV-NA-2', 200_00);
    await f.addInvoice('INV-NA-3', 300_00);
    await payByAch(f, 'INV-NA-1', '100.00');
    await payByAch(f, 'INV-NA-2', '200.00');
    await payByAch(f, 'INV-NA-3', '300.00');
    let outcome: unknown;
    try {
      outcome = await exportAchFile(deps, f.tenant.id, f.admin, { outDir });
    } catch (error) {
      outcome = { code: (error as { code?: string }).code, refused: (error as Error).message };
    }
    expect(outcome).toMatchObject({
      code: 'ach_export_refused',
      refused: expect.stringMatching(/company\.name/),
    });
    const rows = await payments();
    expect(rows.map((r) => [r.status, r.provider_reference?.startsWith('nacha:')])).toEqual([
      ['processing', true],
      ['processing', true],
      ['processing', true],
    ]);
    const alerts = await f.t.db.withTenant(f.tenant.id, (c) => listAlerts(c));
    expect(alerts.map((a) => a.kind)).toEqual(['ach_export_refused']);
    expect(alerts[0]!.next_step).toMatch(/--company-name/);
    const files = await f.t.db.withTenant(f.tenant.id, (c) => c.query('SELECT id FROM ach_files'));
    expect(files.rows).toEqual([]);

    // Corrected, the next export sends all three.
    await setAchSettings(f.t.db, f.tenant.id, f.admin, deps.sealer, { companyName: 'CAFE ROYAL' });
    const result = await exportAchFile(deps, f.tenant.id, f.admin, { outDir });
    expect(result.file?.entry_count).toBe(3);
  });

  it('an amount wider than the 10-digit entry field: refused before approval, and never blamed on bank details', async () => {
    await setup();
    await f.addInvoice('INV-BIG-1', 100_000_000_00); // $100,000,000.00: one cent over 9,999,999,999 cents
    const input = { invoice: 'INV-BIG-1', amount: '100000000.00', currency: 'USD', method: 'ach' };
    await expect(payInvoice(f.deps, { agentKey: f.agentKey }, input)).rejects.toMatchObject({
      code: 'amount_not_supported',
    });
    // A payment queued before that rule (here: a small one made large by hand) is failed at export as
    // too large for one entry, not as the vendor's bank details.
    await f.addInvoice('INV-BIG-2', 10_00);
    const id = await payByAch(f, 'INV-BIG-2', '10.00');
    await f.t.db.withSystem((c) =>
      c.query('UPDATE payments SET amount_minor = $2 WHERE id = $1', [id, 100_000_000_00]),
    );
    const result = await exportAchFile(deps, f.tenant.id, f.admin, { outDir });
    expect(result.excluded.map((x) => x.payment_id)).toEqual([id]);
    expect((await payments()).find((p) => p.id === id)).toMatchObject({
      status: 'failed',
      failure_code: 'declined',
    });
  });

  it('long and non-ASCII vendor names and invoice numbers: one valid file, amounts exact at 99,999,999.99', async () => {
    await setup();
    const sealer = createSealer('test-secret');
    const names = [
      'Société Générale des Éléments Électriques Réunis SARL',
      '株式会社テスト',
      'Straße & Söhne GmbH — Zürich',
    ];
    for (const [i, name] of names.entries()) {
      await addVendor(f.t.db, f.tenant.id, f.admin, sealer, {
        name,
        bank: { routingNumber: '110000000', accountNumber: `9876543210123${i}` },
      });
      await addInvoice(f.t.db, f.tenant.id, f.admin, {
        number: `INV-VERY-LONG-NUMBER-2026-000${i}`,
        vendor: name,
        amountMinor: 9_999_999_999 - i,
        currency: 'USD',
      });
    }
    const agent = await f.newAgent({ name: 'bulk', rateLimitPerMinute: 10_000 });
    for (const [i] of names.entries()) {
      const input = {
        invoice: `INV-VERY-LONG-NUMBER-2026-000${i}`,
        amount: ((9_999_999_999 - i) / 100).toFixed(2),
        currency: 'USD',
        method: 'ach',
      };
      const ask = (await payInvoice(f.deps, { agentKey: agent.agentKey }, input)) as { approval_id: string };
      const token = await f.approveAs(f.admin, ask.approval_id);
      const done = (await payInvoice(
        f.deps,
        { agentKey: agent.agentKey },
        { ...input, approval_token: token },
      )) as PaymentConfirmation;
      expect(done.status).toBe('processing');
    }
    const result = await exportAchFile(deps, f.tenant.id, f.admin, { outDir });
    expect(result.excluded).toEqual([]);
    const bytes = await fs.readFile(result.path!);
    const { file, issues } = readAndValidate(bytes, result.path!);
    expect(issues).toEqual([]);
    expect(bytes.every((b) => b === 0x0a || (b >= 0x20 && b <= 0x7e))).toBe(true);
    const entries = file.batches.flatMap((b) => b.entries);
    expect(entries.map((e) => e.amountMinor).sort()).toEqual([9_999_999_997, 9_999_999_998, 9_999_999_999]);
    expect(file.control!.totalCreditMinor).toBe(3 * 9_999_999_999 - 3);
  });

  it('many entries whose sum passes the 12-digit batch/file control total: the export still sends them (split), not fail forever', async () => {
    await setup();
    const agent = await f.newAgent({ name: 'bulk', rateLimitPerMinute: 100_000 });
    const count = 101; // 101 x 99,999,999.99 = 10,099,999,999.99 > 9,999,999,999.99 (12 digits of cents)
    for (let i = 0; i < count; i++) {
      const number = `INV-MAX-${String(i).padStart(3, '0')}`;
      await f.addInvoice(number, 9_999_999_999);
      const input = { invoice: number, amount: '99999999.99', currency: 'USD', method: 'ach' };
      const ask = (await payInvoice(f.deps, { agentKey: agent.agentKey }, input)) as { approval_id: string };
      const token = await f.approveAs(f.admin, ask.approval_id);
      const done = (await payInvoice(
        f.deps,
        { agentKey: agent.agentKey },
        { ...input, approval_token: token },
      )) as PaymentConfirmation;
      expect(done.status).toBe('processing');
    }
    const attempts: string[] = [];
    let exported = 0;
    for (let k = 0; k < 3; k++) {
      try {
        const r = await exportAchFile(deps, f.tenant.id, f.admin, { outDir });
        if (!r.file) break;
        exported += r.file.entry_count;
        const { issues } = readAndValidate(await fs.readFile(r.path!), r.path!);
        expect(issues).toEqual([]);
        attempts.push(`file of ${r.file.entry_count}`);
      } catch (e) {
        attempts.push(`error: ${(e as Error).message}`);
      }
    }
    const failed = (await payments()).filter((p) => p.status === 'failed');
    expect({ exported, failed: failed.length }, JSON.stringify(attempts)).toEqual({
      exported: count,
      failed: 0,
    });
  }, 120_000);
});

describe('the NACHA writer, for the export', () => {
  it("the writer's batch- and file-level refusals name no entry", () => {
    const entry: WriteEntry = {
      reference: 'pay_1',
      secCode: 'CCD',
      direction: 'credit',
      company: { name: 'CAFÉ', identification: '1234567890', entryDescription: 'VENDOR PAY' },
      effectiveDate: '2026-11-27',
      routingNumber: '231380104',
      accountNumber: '12345678',
      accountType: 'checking',
      amountMinor: 100,
      name: 'Vendor',
    };
    const refusal = (e: WriteEntry) => {
      try {
        writeNacha([e], { ...odfiSettings, balanced: false }, { createdAt: new Date() });
      } catch (error) {
        return error as NachaWriteError;
      }
      throw new Error('written');
    };
    expect(refusal(entry)).toMatchObject({ field: 'company.name', reference: undefined });
    expect(
      refusal({ ...entry, company: { ...entry.company, name: 'ACME', entryDescription: ' ' } }),
    ).toMatchObject({
      field: 'company.entryDescription',
      reference: undefined,
    });
    expect(refusal({ ...entry, company: { ...entry.company, name: 'ACME' }, name: 'Zoë' })).toMatchObject({
      field: 'name',
      reference: 'pay_1',
    });
  });
});
