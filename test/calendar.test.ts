/** Banking days: weekends and the Federal Reserve's holidays are skipped wherever a date is moved on. */
import { expect, it } from 'vitest';
import {
  addBusinessDays,
  isBusinessDay,
  nextBusinessDay,
  previousBusinessDay,
  whyNotBusinessDay,
} from '../src/payments/calendar.js';

it('whatever time zone the server runs in', () => {
  // Years no other test here has asked for, so their holidays are computed under this zone.
  const zone = process.env.TZ;
  process.env.TZ = 'Asia/Tokyo';
  try {
    expect(isBusinessDay('2029-11-22')).toBe(false); // Thanksgiving
    expect(isBusinessDay('2029-11-21')).toBe(true);
    expect(isBusinessDay('2030-01-01')).toBe(false); // New Year's Day
    expect(isBusinessDay('2029-12-31')).toBe(true);
  } finally {
    if (zone === undefined) delete process.env.TZ;
    else process.env.TZ = zone;
  }
});

it('skips the Federal Reserve’s holidays as it skips weekends', () => {
  expect(isBusinessDay('2026-11-26')).toBe(false); // Thanksgiving
  expect(isBusinessDay('2026-11-27')).toBe(true); // the Friday after: the Fed is open
  expect(nextBusinessDay('2026-11-25')).toBe('2026-11-27');
  expect(nextBusinessDay('2027-01-15')).toBe('2027-01-19'); // Friday, then Martin Luther King Jr. Day
  expect(isBusinessDay('2027-06-18')).toBe(true); // Juneteenth 2027 is a Saturday: not moved to Friday
  expect(isBusinessDay('2028-12-25')).toBe(false); // Christmas on a Monday
  expect(isBusinessDay('2027-07-05')).toBe(false); // Independence Day 2027 is a Sunday: observed Monday
  expect(isBusinessDay('2027-12-31')).toBe(true); // New Year's Day 2028 is a Saturday: the Fed opens Friday
  expect(nextBusinessDay('2027-12-31')).toBe('2028-01-03');
  expect(previousBusinessDay('2026-11-27')).toBe('2026-11-25'); // back over Thanksgiving
  expect(previousBusinessDay('2027-01-19')).toBe('2027-01-15'); // back over a weekend and MLK Day
  expect(addBusinessDays('2026-12-23', 3)).toBe('2026-12-29'); // 24th, (25th Christmas), 28th, 29th
});

it('says why a day is not a banking day, as a refusal shows it', () => {
  expect(whyNotBusinessDay('2026-11-26')).toBe('Thanksgiving Day, a Federal Reserve holiday');
  expect(whyNotBusinessDay('2027-07-05')).toBe('Independence Day (observed), a Federal Reserve holiday');
  expect(whyNotBusinessDay('2026-11-28')).toBe('a Saturday');
  expect(whyNotBusinessDay('2026-11-29')).toBe('a Sunday');
  expect(whyNotBusinessDay('2026-11-27')).toBeNull();
});
