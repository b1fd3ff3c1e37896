/**
 * Exactly once: concurrent exports never put a payment in two files, and a file recorded but not yet
 * written (a crash between the commit and the write) is written later with the same bytes.
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type AchDeps,
  exportAchFile,
  listAchFiles,
  recordAchExport,
  setAchSettings,
  writeAchFile,
} from '../../src/ach/index.js';
import { createDb, type Db } from '../../src/db/pool.js';
import { addVendor } from '../../src/directory/counterparties.js';
import { createSealer } from '../../src/directory/encryption.js';
import { readAndValidate } from '../../src/gateways/nacha/validator.js';
import { listAlerts } from '../../src/payments/alerts.js';
import { getPayment } from '../../src/payments/payments.js';
import { createFixture, type Fixture } from '../support/fixture.js';
import { odfiSettings, payByAch } from './support.js';

describe('ACH export, exactly once', () => {
  let f: Fixture;
  let outDir: string;
  const sealer = createSealer('test-secret');
  const paymentIds: string[] = [];
  // Separate pools, as separate `paygate ach export` processes would have.
  const pools: Db[] = [];

  beforeAll(async () => {
    f = await createFixture();
    outDir = await fs.mkdtemp(path.join(os.tmpdir(), 'paygate-ach-race-'));
    await f.addMethod({ rail: 'ach', token: 'nacha:operating', provider: 'nacha' });
    await setAchSettings(f.t.db, f.tenant.id, f.admin, sealer, {
      ...odfiSettings,
      // Balanced, so the offset entries take trace numbers too.
      balanced: true,
      offsetAccountNumber: '99887766',
    });
    for (let i = 1; i <= 8; i++) {
      await f.addInvoice(`INV-RACE-${i}`, 100_00 + i);
      paymentIds.push(await payByAch(f, `INV-RACE-${i}`, `100.0${i}`));
    }
    for (let i = 0; i < 4; i++) pools.push(createDb(f.t.url, { max: 2 }));
  });
  afterAll(async () => {
    for (const p of pools) await p.close();
    await fs.rm(outDir, { recursive: true, force: true });
    await f.close();
  });

  it('four exports at once: every payment lands in exactly one file, and traces never repeat', async () => {
    const results = await Promise.all(
      pools.map((db) => exportAchFile({ db, sealer }, f.tenant.id, f.admin, { outDir })),
    );
    const files = results.filter((r) => r.file !== null);
    expect(files.length).toBeGreaterThanOrEqual(1);
    expect(files.reduce((n, r) => n + r.file!.entry_count, 0)).toBe(8);

    // From the files themselves: each payment's trace appears once across every file written.
    const traces: string[] = [];
    for (const r of files) {
      const { file, issues } = readAndValidate(await fs.readFile(r.path!), r.path!);
      expect(issues).toEqual([]);
      traces.push(...file.batches.flatMap((b) => b.entries.map((e) => e.traceNumber)));
    }
    expect(new Set(traces).size).toBe(traces.length);

    const { rows } = await f.t.db.withTenant(f.tenant.id, (c) =>
      c.query<{ id: string; ach_file_id: string; provider_reference: string }>(
        "SELECT id, ach_file_id, provider_reference FROM payments WHERE provider = 'nacha'",
      ),
    );
    expect(rows.map((r) => r.id).sort()).toEqual([...paymentIds].sort());
    for (const r of rows) {
      expect(files.map((x) => x.file!.ach_file_id)).toContain(r.ach_file_id);
      // The payment's trace is one of the entries (not an offset) of its own file.
      expect(traces.filter((t) => t === r.provider_reference)).toHaveLength(1);
    }
    // Every trace that is not a payment's is an offset entry to the originator's own account.
    const offsets = traces.filter((t) => !rows.some((r) => r.provider_reference === t));
    expect(offsets.length).toBe(files.length);
  });

  it('a crash after the commit loses nothing: the recorded file is written later, byte for byte', async () => {
    const deps: AchDeps = { db: f.t.db, sealer };
    await f.addInvoice('INV-CRASH-1', 77_00);
    await payByAch(f, 'INV-CRASH-1', '77.00');
    // The export's transaction commits; the process "dies" before writing the file.
    const { file } = await recordAchExport(deps, f.tenant.id, f.admin, new Date());
    expect(file).toMatchObject({ entry_count: 1, written_path: null });
    const unwritten = (await f.t.db.withTenant(f.tenant.id, (c) => listAchFiles(c))).filter(
      (x) => x.written_path === null,
    );
    expect(unwritten.map((x) => x.ach_file_id)).toEqual([file!.ach_file_id]);
    // Nothing waits any more: the payment is in that file, so a new export does not take it again.
    expect((await exportAchFile(deps, f.tenant.id, f.admin, { outDir })).file).toBeNull();

    const first = await writeAchFile(deps, f.tenant.id, f.admin, file!.ach_file_id, outDir);
    const bytes = await fs.readFile(first.path);
    expect(createHash('sha256').update(bytes).digest('hex')).toBe(file!.content_sha256);
    expect(first.file.written_path).toBe(first.path);
    await fs.rm(first.path);
    const again = await writeAchFile(deps, f.tenant.id, f.admin, file!.ach_file_id, outDir);
    expect(again.path).toBe(first.path);
    expect(await fs.readFile(again.path)).toEqual(bytes);
    // No temporary files are left behind.
    expect((await fs.readdir(outDir)).filter((n) => n.endsWith('.tmp'))).toEqual([]);
  });

  it('the stored file text is sealed, not plain', async () => {
    const { rows } = await f.t.db.withTenant(f.tenant.id, (c) =>
      c.query<{ content_ciphertext: Buffer }>('SELECT content_ciphertext FROM ach_files'),
    );
    expect(rows.length).toBeGreaterThan(0);
    for (const r of rows) expect(r.content_ciphertext.toString('latin1')).not.toContain('000123456789');
  });

  it('a second tenant on the same ODFI gets traces of its own (one sequence per bank, not per tenant)', async () => {
    const beta = await createFixture({ slug: 'beta', t: f.t, sandbox: f.sandbox });
    await beta.addMethod({ rail: 'ach', token: 'nacha:operating', provider: 'nacha' });
    await setAchSettings(f.t.db, beta.tenant.id, beta.admin, sealer, odfiSettings);
    await beta.addInvoice('INV-BETA-1', 5_00);
    const id = await payByAch(beta, 'INV-BETA-1', '5.00');
    const result = await exportAchFile({ db: f.t.db, sealer }, beta.tenant.id, beta.admin, { outDir });
    expect(result.file).toMatchObject({ entry_count: 1 });
    const trace = (await beta.t.db.withTenant(beta.tenant.id, (c) => getPayment(c, id)))!.providerReference!;
    const acme = await f.t.db.withTenant(f.tenant.id, (c) =>
      c.query<{ provider_reference: string }>(
        "SELECT provider_reference FROM payments WHERE provider = 'nacha'",
      ),
    );
    expect(trace.slice(0, 8)).toBe('09140060');
    expect(acme.rows.map((r) => r.provider_reference)).not.toContain(trace);
    await beta.close();
  });

  it('a payment that cannot be written (vendor without bank details) fails with an alert; the rest go out', async () => {
    await addVendor(f.t.db, f.tenant.id, f.admin, sealer, { name: 'No Bank LLC' });
    await f.addInvoice('INV-NOBANK', 9_00, 'USD', 'No Bank LLC');
    await f.addInvoice('INV-WITHBANK', 8_00);
    const noBank = await payByAch(f, 'INV-NOBANK', '9.00');
    const withBank = await payByAch(f, 'INV-WITHBANK', '8.00');
    const result = await exportAchFile(
      { db: f.t.db, sealer, onAlert: f.deps.onAlert },
      f.tenant.id,
      f.admin,
      {
        outDir,
      },
    );
    expect(result.excluded).toEqual([
      {
        payment_id: noBank,
        invoice_number: 'INV-NOBANK',
        reason: 'vendor No Bank LLC has no bank account on file for ACH',
      },
    ]);
    expect(result.file).toMatchObject({ entry_count: 1, total_credit_minor: 8_00 });
    const failed = (await f.t.db.withTenant(f.tenant.id, (c) => getPayment(c, noBank)))!;
    expect(failed).toMatchObject({ status: 'failed', failureCode: 'payment_method_invalid' });
    expect((await f.t.db.withTenant(f.tenant.id, (c) => getPayment(c, withBank)))!.providerReference).toMatch(
      /^09140060\d{7}$/,
    );
    const alerts = await f.t.db.withTenant(f.tenant.id, (c) => listAlerts(c, { paymentId: noBank }));
    expect(alerts.map((a) => a.kind)).toEqual(['payment_request_payment_method']);
  });

  it('only an admin exports', async () => {
    await expect(
      exportAchFile({ db: f.t.db, sealer }, f.tenant.id, f.approver, { outDir }),
    ).rejects.toMatchObject({ code: 'admin_required' });
  });
});
