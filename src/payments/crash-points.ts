/**
 * TEST-ONLY crash injection. `PAYGATE_CRASH_AT=<point>[:<n>]` makes this process SIGKILL itself the n-th
 * time (default the first) it reaches `<point>`, so the crash harness (test/worker/crash.test.ts) can
 * stop a real process at the exact places where money is in flight and prove that recovery neither
 * loses an approved payment nor pays one twice. Unset (always, outside that harness) it does nothing.
 *
 * Points: `after_claim` (worker: schedules leased, phase 1 not started), `after_phase1` (payment row
 * committed `processing`, provider not called; in a worker batch, reached just before each payment's
 * call, so the n-th is a kill with n - 1 of the batch's calls under way; also a schedule_payment
 * call's: its schedule committed, its idempotency key not yet answered), `after_provider_call` (the
 * provider answered, phase 3 not committed; in a batch, the others' calls may be in flight),
 * `after_phase3` (payment recorded, the schedule not yet marked; a batch marks its successes' schedules
 * in its phase 3, so there this is a kill after the whole batch's phase 3), `after_refund_call` (a
 * refund's provider call answered, possibly refunded, its phase 3 not committed: the refund is pending
 * with no reference, for the worker's re-drive under the same key), and
 * `in_webhook` (sidecar: the verified event row committed, not yet applied: the retry must still apply
 * it), `in_webhook_apply` (inside the applying transaction, the payment changed but not committed: the
 * rollback must leave it unapplied and unlocked) and `after_webhook_apply` (applied and committed, the
 * provider not yet answered: its retry must change nothing).
 * SIGKILL, not an exception: nothing runs after it, no `finally`, no rollback hook, like a power cut.
 */
export type CrashPoint =
  | 'after_claim'
  | 'after_phase1'
  | 'after_provider_call'
  | 'after_phase3'
  | 'after_refund_call'
  | 'in_webhook'
  | 'in_webhook_apply'
  | 'after_webhook_apply';

let reached = 0;

export function crashPoint(point: CrashPoint): void {
  const spec = process.env.PAYGATE_CRASH_AT;
  if (!spec) return;
  const [name, nth = '1'] = spec.split(':');
  if (name !== point) return;
  reached += 1;
  if (reached === Number(nth)) process.kill(process.pid, 'SIGKILL');
}
