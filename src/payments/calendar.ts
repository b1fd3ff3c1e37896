/** Dates in the tenant's time zone: "today" for scheduling, and the next business day for reschedules. */

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

/** The next Monday-to-Friday after `date`. (Bank holidays are the bank's: ACH settles on its calendar.) */
export function nextBusinessDay(date: string): string {
  let next = addDays(date, 1);
  for (;;) {
    const day = new Date(`${next}T00:00:00Z`).getUTCDay();
    if (day !== 0 && day !== 6) return next;
    next = addDays(next, 1);
  }
}
