/**
 * The ACH commands as an operator runs them (the built CLI in a child process, a real database):
 * settings and export need an admin's token; export prints the file, count and totals; the exported
 * file passes `ach validate`; import-returns applies what matches and reports what does not.
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listAlerts } from '../../src/payments/alerts.js';
import { getPayment } from '../../src/payments/payments.js';
import { refPath } from '../nacha/support.js';
import { cliFor } from '../support/cli.js';
import { createFixture, type Fixture } from '../support/fixture.js';
import { payByAch } from './support.js';

describe('paygate ach (CLI)', () => {
  let f: Fixture;
  let cli: ReturnType<typeof cliFor>;
  let outDir: string;
  let dataDir: string;
  let admin: Record<string, string>;
  const ids: string[] = [];
  const settingsArgs = [
    'ach',
    'settings',
    '--tenant',
    'acme',
    '--immediate-destination',
    '091400606',
    '--immediate-destination-name',
    'FIRST BANK & TRUST',
    '--immediate-origin',
    '6910001341',
    '--immediate-origin-name',
    'ACME CORP',
    '--odfi-routing',
    '091400606',
    '--company-name',
    'ACME CORP',
    '--company-id',
    '1234567890',
    '--unbalanced',
    '--cutoff',
    '15:30',
  ];

  beforeAll(async () => {
    f = await createFixture();
    outDir = await fs.mkdtemp(path.join(os.tmpdir(), 'paygate-ach-cli-'));
    dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'paygate-ach-data-'));
    // The fixture sealed the vendor's account under this secret; the CLI must open it with the same.
    cli = cliFor(f.t.url, dataDir);
    admin = { PAYGATE_USER_TOKEN: f.admin.token, PAYGATE_SECRET: 'test-secret' };
    await f.addMethod({ rail: 'ach', token: 'nacha:operating', provider: 'nacha' });
    await f.addInvoice('INV-CLI-1', 123_54);
    await f.addInvoice('INV-CLI-2', 20_00);
  });
  afterAll(async () => {
    await fs.rm(outDir, { recursive: true, force: true });
    await fs.rm(dataDir, { recursive: true, force: true });
    await f.close();
  });

  it('settings: an approver is refused (exit 1), an admin sets them', async () => {
    const refused = await cli.cli(settingsArgs, {
      PAYGATE_USER_TOKEN: f.approver.token,
      PAYGATE_SECRET: 'test-secret',
    });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/not an admin/);
    const bad = await cli.cli([...settingsArgs, '--odfi-routing', '091400607'], admin);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--odfi-routing: invalid routing check digit/);
    const set = await cli.json(settingsArgs, admin);
    expect(set).toMatchObject({
      odfi_routing: '091400606',
      company_name: 'ACME CORP',
      cutoff: '15:30',
      balanced: false,
    });
    const shown = await cli.json(['ach', 'settings', '--tenant', 'acme'], {
      PAYGATE_USER_TOKEN: f.approver.token,
    });
    expect(shown).toEqual(set);
  });

  it('export prints the file, its entry count and totals; the file validates; a second export is empty', async () => {
    ids.push(await payByAch(f, 'INV-CLI-1', '123.54'), await payByAch(f, 'INV-CLI-2', '20.00'));
    const noToken = await cli.cli(['ach', 'export', '--tenant', 'acme', '--out', outDir]);
    expect(noToken.code).toBe(1);
    const out = await cli.json<{
      path: string;
      entry_count: number;
      total_credit: string;
      total_credit_minor: number;
    }>(['ach', 'export', '--tenant', 'acme', '--out', outDir], admin);
    expect(out).toMatchObject({
      entry_count: 2,
      total_credit: '143.54',
      total_credit_minor: 143_54,
      total_debit: '0.00',
    });
    expect(path.dirname(out.path)).toBe(outDir);
    const valid = await cli.cli(['ach', 'validate', out.path]);
    expect(valid.code).toBe(0);
    const again = await cli.cli(['ach', 'export', '--tenant', 'acme', '--out', outDir], admin);
    expect(again.code).toBe(0);
    expect(again.stdout).toMatch(/nothing to export/);
    const files = await cli.json<{ ach_file_id: string; written_path: string }[]>(
      ['ach', 'files', 'list', '--tenant', 'acme'],
      admin,
    );
    expect(files).toEqual([expect.objectContaining({ written_path: out.path, entry_count: 2 })]);
  });

  it('import-returns applies the matching return and reports the one that matches nothing', async () => {
    const file = refPath('test/testdata/return-WEB.ach');
    expect((await cli.cli(['ach', 'import-returns', file, '--tenant', 'acme'])).code).toBe(1);
    const result = await cli.json<{
      returns: { return_code: string; outcome: string; payment_id: string | null }[];
    }>(['ach', 'import-returns', file, '--tenant', 'acme'], admin);
    // Our two payments have traces ...01 and ...02: R01 names ...01; R03 names ...03, which is no one's.
    expect(result.returns.map((r) => [r.return_code, r.outcome, r.payment_id])).toEqual([
      ['R01', 'failed', ids[0]],
      ['R03', 'unmatched', null],
    ]);
    const p = await f.t.db.withTenant(f.tenant.id, (c) => getPayment(c, ids[0]!));
    expect(p).toMatchObject({ status: 'failed', failureProviderCode: 'R01' });
    const alerts = await f.t.db.withTenant(f.tenant.id, (c) => listAlerts(c));
    expect(alerts.map((a) => a.kind)).toContain('ach_return_unmatched');
  });

  it('import-returns FILE, as DESIGN.md writes it (no --tenant), works in the tenant of the admin token', async () => {
    const file = refPath('test/testdata/return-WEB.ach');
    // The same file again: found in this tenant by its traces, recorded once already.
    const again = await cli.json<{ returns: { return_code: string; outcome: string }[] }>(
      ['ach', 'import-returns', file],
      admin,
    );
    expect(again.returns.map((r) => [r.return_code, r.outcome])).toEqual([
      ['R01', 'duplicate'],
      ['R03', 'duplicate'],
    ]);
    const p = await f.t.db.withTenant(f.tenant.id, (c) => getPayment(c, ids[0]!));
    expect(p).toMatchObject({ status: 'failed', failureProviderCode: 'R01' });
    const noToken = await cli.cli(['ach', 'import-returns', file]);
    expect(noToken.code).toBe(1);
    expect(noToken.stderr).toMatch(/personal access token/);
  });

  it('importing the same return file again raises no new ach_return_unmatched alert and changes nothing', async () => {
    // Imported twice above; a third time (an operator retrying after a timeout) must change nothing.
    const file = refPath('test/testdata/return-WEB.ach');
    const listUnmatched = async () =>
      (
        await cli.json<{ kind: string; message: string }[]>(['alerts', 'list', '--tenant', 'acme'], admin)
      ).filter((a) => a.kind === 'ach_return_unmatched');
    const before = await listUnmatched();
    expect(before).toHaveLength(1);
    expect(before[0]!.message).toMatch(/R03 .* names trace 091400600000003/);
    const third = await cli.json<{
      returns: { return_code: string; outcome: string; payment_id: string | null }[];
    }>(['ach', 'import-returns', file, '--tenant', 'acme'], admin);
    expect(third.returns.map((r) => [r.return_code, r.outcome, r.payment_id])).toEqual([
      ['R01', 'duplicate', ids[0]],
      ['R03', 'duplicate', null],
    ]);
    expect(await listUnmatched()).toEqual(before);
  });

  it('import-returns of an invalid file: exit 1, FILE:LINE: reason, nothing applied', async () => {
    const bad = refPath('test/testdata/ppd-debit-invalid-entryDetail-checkDigit.ach');
    const result = await cli.cli(['ach', 'import-returns', bad, '--tenant', 'acme'], admin);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`${bad}:3: `);
  });

  it('settle before the window ends settles nothing; corrections list is empty', async () => {
    expect(await cli.json(['ach', 'settle'])).toEqual([]);
    expect(await cli.json(['ach', 'corrections', 'list', '--tenant', 'acme'], admin)).toEqual([]);
  });
});
