/**
 * Dates in the tenant's time zone, "today" for scheduling, and banking days: the days ACH settles, when
 * a file goes to the bank, and the next day a failed payment is tried again.
 */
import { allForYear } from '@18f/us-federal-holidays';

/** Today's date (YYYY-MM-DD) in an IANA time zone. */
export function todayIn(timeZone: string, now: Date = new Date()): string {
  // en-CA formats as YYYY-MM-DD.
  return new Intl.DateTimeFormat('en-CA', {
    timeZone,
    year: 'numeric',
    month: '2-digit',
    day: '2-digit',
  }).format(now);
}

export function addDays(date: string, days: number): string {
  const d = new Date(`${date}T00:00:00Z`);
  d.setUTCDate(d.getUTCDate() + days);
  return d.toISOString().slice(0, 10);
}

/**
 * The Federal Reserve's holidays in `year`, YYYY-MM-DD to name: the US federal holidays (OPM's list, kept
 * by GSA's 18F), a Sunday holiday observed on the Monday after; a Saturday one is not moved, since the Fed
 * opens the Friday before (federalreserve.gov, "Holidays Observed by the Federal Reserve System").
 */
const holidaysByYear = new Map<number, Map<string, string>>();
function federalReserveHolidays(year: number): Map<string, string> {
  let holidays = holidaysByYear.get(year);
  if (!holidays) {
    // Where it falls, to name a Sunday holiday's Monday "(observed)".
    const actual = new Set(
      allForYear(year, { shiftSaturdayHolidays: false, shiftSundayHolidays: false }).map((h) => h.dateString),
    );
    holidays = new Map(
      // dateString, not date: date is local midnight, a day early in UTC wherever the server is east of it.
      allForYear(year, { shiftSaturdayHolidays: false, shiftSundayHolidays: true }).map((holiday) => [
        holiday.dateString,
        actual.has(holiday.dateString) ? holiday.name : `${holiday.name} (observed)`,
      ]),
    );
    holidaysByYear.set(year, holidays);
  }
  return holidays;
}

/** Why `date` is not a banking day ("a Sunday", "Thanksgiving Day, a Federal Reserve holiday"), or null. */
export function whyNotBusinessDay(date: string): string | null {
  const day = new Date(`${date}T00:00:00Z`).getUTCDay();
  if (day === 0) return 'a Sunday';
  if (day === 6) return 'a Saturday';
  const holiday = federalReserveHolidays(Number(date.slice(0, 4))).get(date);
  return holiday ? `${holiday}, a Federal Reserve holiday` : null;
}

/** A banking day: Monday to Friday, and not a Federal Reserve holiday (no ACH settles on one). */
export function isBusinessDay(date: string): boolean {
  return whyNotBusinessDay(date) === null;
}

/** The next banking day after `date`. */
export function nextBusinessDay(date: string): string {
  let next = addDays(date, 1);
  while (!isBusinessDay(next)) next = addDays(next, 1);
  return next;
}

/** The last banking day before `date`. */
export function previousBusinessDay(date: string): string {
  let previous = addDays(date, -1);
  while (!isBusinessDay(previous)) previous = addDays(previous, -1);
  return previous;
}

/** `days` banking days after `date`. */
export function addBusinessDays(date: string, days: number): string {
  let d = date;
  for (let i = 0; i < days; i++) d = nextBusinessDay(d);
  return d;
}
