/**
 * The tenant's ACH settings (validated with the file layer's schema, offset account sealed) and the
 * dates a file gets from the cutoff in the tenant's time zone.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  achSettingsJson,
  fileDates,
  parseStoredAchSettings,
  readStoredAchSettings,
  setAchSettings,
} from '../../src/ach/settings.js';
import { createSealer } from '../../src/directory/encryption.js';
import { createFixture, type Fixture } from '../support/fixture.js';
import { odfiSettings } from './support.js';

describe('fileDates: cutoff, weekends and the return window', () => {
  const s = { cutoff: '16:00', settlementDays: 2 };
  it('before the cutoff on a banking day: submitted today, effective the next banking day', () => {
    // Wednesday 2026-12-02 15:59 in New York (20:59 UTC).
    expect(fileDates(s, 'America/New_York', new Date('2026-12-02T20:59:00Z'))).toEqual({
      submissionDate: '2026-12-02',
      effectiveDate: '2026-12-03',
      returnWindowEnds: '2026-12-07',
    });
  });
  it('at or after the cutoff: the next banking day’s window', () => {
    // Wednesday 16:00 in New York.
    expect(fileDates(s, 'America/New_York', new Date('2026-12-02T21:00:00Z'))).toMatchObject({
      submissionDate: '2026-12-03',
      effectiveDate: '2026-12-04',
    });
  });
  it('the cutoff is in the tenant’s time zone, not UTC', () => {
    // 17:00 UTC on Wednesday is after a UTC cutoff but noon in New York, before its cutoff.
    const at = new Date('2026-12-02T17:00:00Z');
    expect(fileDates(s, 'America/New_York', at).submissionDate).toBe('2026-12-02');
    expect(fileDates(s, 'UTC', at).submissionDate).toBe('2026-12-03');
  });
  it('on a weekend: Monday’s window, effective Tuesday; the window skips the weekend', () => {
    expect(fileDates(s, 'UTC', new Date('2026-12-05T10:00:00Z'))).toEqual({
      submissionDate: '2026-12-07',
      effectiveDate: '2026-12-08',
      returnWindowEnds: '2026-12-10',
    });
    // Friday before the cutoff: effective Monday, window ends Wednesday.
    expect(fileDates(s, 'UTC', new Date('2026-12-04T10:00:00Z'))).toEqual({
      submissionDate: '2026-12-04',
      effectiveDate: '2026-12-07',
      returnWindowEnds: '2026-12-09',
    });
  });
});

describe('fileDates: Federal Reserve holidays are not banking days', () => {
  const s = { cutoff: '16:00', settlementDays: 2 };
  it('Thanksgiving: nothing is submitted, settles or counts toward the return window on it', () => {
    // Wednesday 2026-11-25 before the cutoff: effective Friday, not Thursday the 26th (Thanksgiving).
    expect(fileDates(s, 'America/New_York', new Date('2026-11-25T20:59:00Z'))).toEqual({
      submissionDate: '2026-11-25',
      effectiveDate: '2026-11-27',
      returnWindowEnds: '2026-12-01',
    });
    // After Wednesday's cutoff, and on Thanksgiving itself: Friday's window, effective Monday.
    for (const at of ['2026-11-25T21:00:00Z', '2026-11-26T14:00:00Z']) {
      expect(fileDates(s, 'America/New_York', new Date(at))).toEqual({
        submissionDate: '2026-11-27',
        effectiveDate: '2026-11-30',
        returnWindowEnds: '2026-12-02',
      });
    }
  });
  it('a Sunday holiday closes the Monday after; a Saturday one leaves the Friday before open', () => {
    // Independence Day 2027 is a Sunday: Monday 5 July is observed, so Friday's file is effective Tuesday.
    expect(fileDates(s, 'UTC', new Date('2027-07-02T10:00:00Z'))).toMatchObject({
      submissionDate: '2027-07-02',
      effectiveDate: '2027-07-06',
    });
    // Independence Day 2026 is a Saturday: the Fed opens Friday 3 July, so Thursday's file settles then.
    expect(fileDates(s, 'UTC', new Date('2026-07-02T10:00:00Z'))).toMatchObject({
      submissionDate: '2026-07-02',
      effectiveDate: '2026-07-03',
    });
  });
  it('the return window runs past Christmas and New Year’s Day', () => {
    // Wednesday 2026-12-23: effective Thursday 24th; Friday 25th is Christmas, so two banking days on
    // end Tuesday the 29th. A file effective Wednesday the 30th: Thursday the 31st, then Monday 4 January.
    expect(fileDates(s, 'UTC', new Date('2026-12-23T10:00:00Z'))).toEqual({
      submissionDate: '2026-12-23',
      effectiveDate: '2026-12-24',
      returnWindowEnds: '2026-12-29',
    });
    expect(fileDates(s, 'UTC', new Date('2026-12-29T10:00:00Z')).returnWindowEnds).toBe('2027-01-04');
  });
});

describe('setAchSettings', () => {
  let f: Fixture;
  const sealer = createSealer('test-secret');
  beforeAll(async () => {
    f = await createFixture();
  });
  afterAll(async () => f.close());

  it('refuses to export before an admin has set them', async () => {
    const { raw } = await f.t.db.withTenant(f.tenant.id, (c) => readStoredAchSettings(c, f.tenant.id));
    expect(() => parseStoredAchSettings(raw)).toThrow(
      expect.objectContaining({ code: 'ach_not_configured' }),
    );
  });

  it('names the flags still missing, as the admin types them', async () => {
    const partial = { odfiRouting: odfiSettings.odfiRouting, companyId: odfiSettings.companyId };
    const refusal = setAchSettings(f.t.db, f.tenant.id, f.admin, sealer, partial);
    await expect(refusal).rejects.toThrow(
      /--company-name is missing; --immediate-destination is missing; .*--balanced or --unbalanced is missing/,
    );
  });

  it('is admin-only', async () => {
    await expect(setAchSettings(f.t.db, f.tenant.id, f.approver, sealer, odfiSettings)).rejects.toMatchObject(
      {
        code: 'admin_required',
      },
    );
  });

  it('refuses a routing number with a bad check digit, and balanced without an offset account', async () => {
    await expect(
      setAchSettings(f.t.db, f.tenant.id, f.admin, sealer, { ...odfiSettings, odfiRouting: '091400607' }),
    ).rejects.toThrow(/--odfi-routing: invalid routing check digit/);
    await expect(
      setAchSettings(f.t.db, f.tenant.id, f.admin, sealer, { ...odfiSettings, balanced: true }),
    ).rejects.toThrow(/--offset-account/);
    await expect(
      setAchSettings(f.t.db, f.tenant.id, f.admin, sealer, { ...odfiSettings, cutoff: '25:00' }),
    ).rejects.toThrow(/cutoff/);
  });

  it('stores the offset account sealed, shows it as last4, and merges later changes', async () => {
    await setAchSettings(f.t.db, f.tenant.id, f.admin, sealer, {
      ...odfiSettings,
      balanced: true,
      offsetAccountNumber: '5550001234',
    });
    const changed = await setAchSettings(f.t.db, f.tenant.id, f.admin, sealer, { settlementDays: 3 });
    expect(achSettingsJson(changed)).toMatchObject({
      balanced: true,
      offset_account_last4: '1234',
      settlement_days: 3,
      company_name: 'ACME CORP',
    });
    const { raw } = await f.t.db.withTenant(f.tenant.id, (c) => readStoredAchSettings(c, f.tenant.id));
    expect(JSON.stringify(raw)).not.toContain('5550001234');
  });
});
