/**
 * effective entry date and return window around cutoff, weekends, Saturday/Sunday holidays and
 * a tenant time zone whose date differs from UTC's; settlement exactly at the window's local midnight.
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AchDeps, exportAchFile, setAchSettings, settleAchPayments } from '../../src/ach/index.js';
import { createSealer } from '../../src/directory/encryption.js';
import { readAndValidate } from '../../src/gateways/nacha/validator.js';
import { createFixture, type Fixture } from '../support/fixture.js';
import { odfiSettings, payByAch } from './support.js';

describe('ACH dates in America/Los_Angeles', () => {
  let f: Fixture;
  let deps: AchDeps;
  let outDir: string;
  let n = 0;
  beforeAll(async () => {
    f = await createFixture({ slug: 'dates-co' });
    deps = { db: f.t.db, sealer: createSealer('test-secret'), onAlert: f.deps.onAlert };
    outDir = await fs.mkdtemp(path.join(os.tmpdir(), 'hostile2-ach-dates-'));
    await f.addMethod({ rail: 'ach', token: 'nacha:operating', provider: 'nacha', label: 'Operating' });
    await setAchSettings(f.t.db, f.tenant.id, f.admin, deps.sealer, odfiSettings);
    // The tenant's zone, as `tenant create --timezone America/Los_Angeles` sets it.
    await f.t.db.withSystem((c) =>
      c.query("UPDATE tenants SET timezone = 'America/Los_Angeles' WHERE id = $1", [f.tenant.id]),
    );
  });
  afterAll(async () => {
    await fs.rm(outDir, { recursive: true, force: true });
    await f?.close();
  });

  async function exportAt(now: string) {
    const invoice = `INV-D-${++n}`;
    await f.addInvoice(invoice, 10_00 + n);
    const paymentId = await payByAch(f, invoice, ((10_00 + n) / 100).toFixed(2));
    const result = await exportAchFile(deps, f.tenant.id, f.admin, { outDir, now: new Date(now) });
    const { file, issues } = readAndValidate(await fs.readFile(result.path!), result.path!);
    expect(issues).toEqual([]);
    return { paymentId, result, effective: file.batches[0]!.header.effectiveEntryDate };
  }

  it("Friday 23:30 local on New Year's Eve (Saturday in UTC), after cutoff: next window is Monday, settles Tuesday", async () => {
    const { result, effective } = await exportAt('2027-12-31T23:30:00-08:00');
    expect(effective).toBe('280104');
    expect(result.file).toMatchObject({ effective_date: '2028-01-04', return_window_ends: '2028-01-06' });
  });

  it('Friday before cutoff ahead of a Sunday holiday observed Monday: effective Tuesday', async () => {
    const { result, effective } = await exportAt('2027-07-02T15:00:00-07:00');
    expect(effective).toBe('270706');
    expect(result.file).toMatchObject({ effective_date: '2027-07-06', return_window_ends: '2027-07-08' });
  });

  it('settlement waits for the end of the window in local time, even when UTC is already the next day', async () => {
    const { paymentId } = await exportAt('2027-07-02T15:00:00-07:00').then((x) => x);
    const status = async () =>
      (
        await f.t.db.withSystem((c) =>
          c.query<{ status: string }>('SELECT status FROM payments WHERE id = $1', [paymentId]),
        )
      ).rows[0]!.status;
    await settleAchPayments(f.t.db, new Date('2027-07-08T23:59:00-07:00'), { tenantId: f.tenant.id });
    expect(await status()).toBe('processing');
    await settleAchPayments(f.t.db, new Date('2027-07-09T00:01:00-07:00'), { tenantId: f.tenant.id });
    expect(await status()).toBe('succeeded');
  });
});
