/**
 * The worker's due scheduled payments, one or a batch of one tenant's at a time, through the atomic
 * phases, with the SQL done set-based:
 *
 * phase 1, one transaction: the schedules that are plainly ready (still `scheduled`, invoice
 *   `scheduled`, payment method active) are locked; each gets its payment inserted `processing` at
 *   recovery point `started` with its first check FIRST_CHECK_AFTER_START_MS ahead, its schedule moved
 *   to `running`, its invoice to `processing`, and a `payment.started` audit entry. Exactly once: the
 *   payment is inserted in the transaction that moves its schedule from `scheduled` to `running` under
 *   the schedule's row lock, so a schedule gets at most one payment per run; a `running` schedule is
 *   never started again, its payment is resolved by reconciliation (`reconcilePayment`), which asks the
 *   provider and at most re-sends the same payment id. A crash after phase 1 leaves payments the
 *   reconciler finds at that first check.
 * phase 2: each payment is sent to its provider on its own, a bounded number in flight, each with its
 *   own idempotency key (derived from its payment id).
 * phase 3, one transaction: the payments the provider says succeeded are recorded succeeded, their
 *   invoices paid, their schedules executed, with a `payment.succeeded` entry each.
 *
 * Everything else takes the per-payment code paths, so it gets exactly the outcome it gets today without
 * holding up the rest: a schedule that is not plainly ready goes through executeScheduledPayment, whose
 * phase 1 is the same set-based one for a single schedule after it has dealt with what made it unready
 * (no longer scheduled: nothing to do; its method removed: failed, with an alert); an answer other than
 * a success (a failure for handleFailure, a deferral, a timeout, a pending ACH) goes through
 * recordProviderAnswer; a success whose payment changed meanwhile (a webhook got there first) through
 * applyPaymentOutcome. When a batch transaction fails as a whole (a deadlock, an invoice moved under
 * it), nothing of it is committed and each of its payments takes the per-payment path instead.
 */
import { randomUUID } from 'node:crypto';
import { appendAudit } from '../audit/log.js';
import type { Queryable } from '../db/pool.js';
import { createAlert, ruleFor } from './alerts.js';
import type { EngineDeps, FailureNotice } from './context.js';
import { crashPoint } from './crash-points.js';
import { transitionInvoice, transitionInvoices } from './invoices.js';
import { FIRST_CHECK_AFTER_START_MS, newConfirmationNumber, type Payment } from './payments.js';
import {
  callProvider,
  executeSubmission,
  loadSubmissions,
  type ProviderAnswer,
  recordProviderAnswer,
  type Submission,
} from './phases.js';

/** Provider calls of one batch in flight at once: enough to hide the provider's latency, few enough not to flood it. */
const DEFAULT_CALLS_IN_FLIGHT = 16;

export interface ScheduledBatchOptions {
  /** Who runs it (worker id), for the audit log. */
  workerId?: string;
  /** Asked once per payment: see ExecuteOptions.retryLaterMs (the deferral of a retryable failure). */
  retryLaterMs?: () => number;
  callsInFlight?: number;
  /**
   * Told when a batch transaction failed as a whole (a deadlock, a row that broke a constraint), so its
   * payments take the per-payment path: nothing is lost, but an operator should see why it was slow.
   */
  onBatchFailed?: (phase: 'phase 1' | 'phase 3', error: unknown, payments: number) => void;
}

/** What became of one schedule: its payment (null: not started), or the error that stopped it. */
export type ScheduledResult =
  | { scheduledId: string; payment: Pick<Payment, 'id' | 'status' | 'recoveryPoint'> | null }
  | { scheduledId: string; error: unknown };

interface Started {
  scheduledId: string;
  submission: Submission;
}

interface Answered extends Started {
  answer: ProviderAnswer;
  /** Asked when the payment was sent, as the per-payment path asks it (see ScheduledBatchOptions). */
  retryLaterMs: number | undefined;
}

/** Execute the claimed, due schedules `scheduledIds` of one tenant; one result per schedule. */
export async function executeScheduledBatch(
  deps: EngineDeps,
  tenantId: string,
  scheduledIds: string[],
  options: ScheduledBatchOptions = {},
): Promise<ScheduledResult[]> {
  const results: ScheduledResult[] = [];
  let started: Started[] = [];
  try {
    started = await deps.db.withTenant(tenantId, (client) =>
      startReadySchedules(client, tenantId, scheduledIds, options),
    );
  } catch (error) {
    // Nothing of phase 1 committed: every schedule takes the per-payment path below.
    options.onBatchFailed?.('phase 1', error, scheduledIds.length);
  }
  const { answered, faults } = await callProviders(deps, started, options);
  results.push(...faults, ...(await recordAnswers(deps, tenantId, answered, options)));

  const batched = new Set(started.map((s) => s.scheduledId));
  for (const scheduledId of scheduledIds) {
    if (batched.has(scheduledId)) continue;
    try {
      const payment = await executeScheduledPayment(deps, tenantId, scheduledId, {
        workerId: options.workerId,
        retryLaterMs: options.retryLaterMs?.(),
      });
      results.push({ scheduledId, payment });
    } catch (error) {
      results.push({ scheduledId, error });
    }
  }
  return results;
}

/** Phase 1 of the plainly ready among `scheduledIds`, in the caller's transaction; the others are left as they are. */
async function startReadySchedules(
  client: Queryable,
  tenantId: string,
  scheduledIds: string[],
  options: { workerId?: string },
): Promise<Started[]> {
  // Locks the schedules in id order (other workers' claims only ever SKIP LOCKED past them). Their
  // invoices are not locked here: transitionInvoices below moves all of them or fails the transaction (a
  // batch's payments then take the per-payment path; a single schedule's failure is its error).
  const { rows } = await client.query<{
    id: string;
    invoice_id: string;
    amount_minor: number;
    currency: string;
    rail: string;
    approved_by: string[];
  }>(
    `SELECT s.id, s.invoice_id, s.amount_minor, s.currency, s.rail, s.approved_by
       FROM scheduled_payments s
       JOIN invoices i ON i.id = s.invoice_id
       JOIN payment_methods m ON m.id = s.payment_method_id
      WHERE s.id = ANY($1::uuid[]) AND s.status = 'scheduled' AND i.status = 'scheduled' AND m.status = 'active'
      ORDER BY s.id
        FOR UPDATE OF s`,
    [scheduledIds],
  );
  if (rows.length === 0) return [];
  const schedules = rows.map((s) => ({ ...s, paymentId: randomUUID() }));
  const paymentIds = schedules.map((s) => s.paymentId);
  await insertPaymentsFromSchedules(
    client,
    schedules.map((s) => ({ scheduledId: s.id, paymentId: s.paymentId })),
  );
  await client.query(
    `UPDATE scheduled_payments s SET status = 'running', payment_id = u.payment_id, attempts = s.attempts + 1,
            locked_until = NULL, locked_by = NULL, updated_at = now()
       FROM unnest($1::uuid[], $2::uuid[]) AS u(id, payment_id)
      WHERE s.id = u.id`,
    [schedules.map((s) => s.id), paymentIds],
  );
  await transitionInvoices(
    client,
    schedules.map((s) => s.invoice_id),
    'scheduled',
    'processing',
  );
  const submissions = new Map((await loadSubmissions(client, paymentIds)).map((s) => [s.paymentId, s]));
  // Written at commit with the transaction's other entries (src/audit/log.ts).
  for (const s of schedules)
    await appendAudit(client, {
      tenantId,
      actorType: 'system',
      actorId: options.workerId ?? 'worker',
      action: 'payment.started',
      subjectId: s.paymentId,
      details: {
        scheduled_payment_id: s.id,
        amount_minor: s.amount_minor,
        currency: s.currency.trim(),
        rail: s.rail,
        approved_by: s.approved_by,
      },
    });
  return schedules.map((s) => ({ scheduledId: s.id, submission: submissions.get(s.paymentId)! }));
}

/**
 * One payment per schedule, `processing` at recovery point `started` like a pay-now payment
 * (insertPayment), with its first submission counted and its first check FIRST_CHECK_AFTER_START_MS ahead.
 */
async function insertPaymentsFromSchedules(
  client: Queryable,
  pairs: { scheduledId: string; paymentId: string }[],
): Promise<void> {
  await client.query(
    `INSERT INTO payments (id, tenant_id, invoice_id, agent_key_id, approval_id, scheduled_payment_id, amount_minor,
                           currency, rail, provider, payment_method_id, confirmation_number, approved_by,
                           submit_attempts, next_check_at)
     SELECT u.payment_id, s.tenant_id, s.invoice_id, s.agent_key_id, s.approval_id, s.id, s.amount_minor, s.currency,
            s.rail, m.provider, s.payment_method_id, u.confirmation_number, s.approved_by,
            1, now() + make_interval(secs => $4)
       FROM unnest($1::uuid[], $2::uuid[], $3::text[]) AS u(scheduled_id, payment_id, confirmation_number)
       JOIN scheduled_payments s ON s.id = u.scheduled_id
       JOIN payment_methods m ON m.id = s.payment_method_id`,
    [
      pairs.map((p) => p.scheduledId),
      pairs.map((p) => p.paymentId),
      pairs.map(() => newConfirmationNumber()),
      FIRST_CHECK_AFTER_START_MS / 1000,
    ],
  );
}

/**
 * Phase 2 for every started payment, `callsInFlight` at a time. An unexpected error (a fault of ours, not
 * a provider failure) is that schedule's result; its payment stays `processing` for the reconciler.
 */
async function callProviders(
  deps: EngineDeps,
  started: Started[],
  options: ScheduledBatchOptions,
): Promise<{ answered: Answered[]; faults: ScheduledResult[] }> {
  const answered: Answered[] = [];
  const faults: ScheduledResult[] = [];
  const queue = [...started];
  const lane = async () => {
    for (let s = queue.shift(); s; s = queue.shift()) {
      const retryLaterMs = options.retryLaterMs?.();
      crashPoint('after_phase1');
      try {
        answered.push({ ...s, answer: await callProvider(deps, s.submission), retryLaterMs });
      } catch (error) {
        faults.push({ scheduledId: s.scheduledId, error });
      }
    }
  };
  const lanes = Math.min(Math.max(1, options.callsInFlight ?? DEFAULT_CALLS_IN_FLIGHT), started.length);
  await Promise.all(Array.from({ length: lanes }, lane));
  return { answered, faults };
}

/** Phase 3: the plain successes together, everything else (and any success the batch could not take) one by one. */
async function recordAnswers(
  deps: EngineDeps,
  tenantId: string,
  answered: Answered[],
  options: ScheduledBatchOptions,
): Promise<ScheduledResult[]> {
  const results: ScheduledResult[] = [];
  const successes = answered.filter((a) => a.answer.outcome?.status === 'succeeded');
  let recorded = new Set<string>();
  try {
    recorded = await recordSuccesses(deps, tenantId, successes);
  } catch (error) {
    // Rolled back as a whole: each of them is recorded on its own below.
    options.onBatchFailed?.('phase 3', error, successes.length);
  }
  for (const a of successes) {
    if (!recorded.has(a.submission.paymentId)) continue;
    crashPoint('after_phase3');
    results.push({
      scheduledId: a.scheduledId,
      payment: { id: a.submission.paymentId, status: 'succeeded', recoveryPoint: 'finished' },
    });
  }
  for (const a of answered) {
    if (recorded.has(a.submission.paymentId)) continue;
    try {
      const payment = await recordProviderAnswer(deps, tenantId, a.submission.paymentId, a.answer, {
        retryLaterMs: a.retryLaterMs,
      });
      crashPoint('after_phase3');
      await settleSchedule(deps, tenantId, a.scheduledId);
      results.push({ scheduledId: a.scheduledId, payment });
    } catch (error) {
      results.push({ scheduledId: a.scheduledId, error });
    }
  }
  return results;
}

/**
 * What applyPaymentOutcome does for a success, for many payments in one transaction, with their
 * schedules settled in it too. Only payments still `processing` move; returns their ids.
 */
async function recordSuccesses(
  deps: EngineDeps,
  tenantId: string,
  successes: Answered[],
): Promise<Set<string>> {
  if (successes.length === 0) return new Set();
  return deps.db.withTenant(tenantId, async (client) => {
    const references = new Map(
      successes.map((a) => [a.submission.paymentId, a.answer.outcome!.providerReference]),
    );
    const { rows } = await client.query<{
      id: string;
      invoice_id: string;
      scheduled_payment_id: string;
      invoice_number: string;
      amount_minor: number;
      currency: string;
      provider: string;
      provider_reference: string | null;
    }>(
      `UPDATE payments p
          SET status = 'succeeded', recovery_point = 'finished', paid_at = now(), next_check_at = NULL, updated_at = now(),
              provider_reference = COALESCE(p.provider_reference, u.provider_reference)
         FROM unnest($1::uuid[], $2::text[]) AS u(id, provider_reference), invoices i
        WHERE p.id = u.id AND p.status = 'processing' AND i.id = p.invoice_id
        RETURNING p.id, p.invoice_id, p.scheduled_payment_id, i.number AS invoice_number, p.amount_minor, p.currency,
                  p.provider, p.provider_reference`,
      [[...references.keys()], [...references.values()]],
    );
    if (rows.length === 0) return new Set();
    // The entries in schedule order, as phase 1 wrote theirs: one batch's log reads the same both times.
    rows.sort((a, b) => (a.scheduled_payment_id < b.scheduled_payment_id ? -1 : 1));
    await transitionInvoices(
      client,
      rows.map((r) => r.invoice_id),
      'processing',
      'paid',
    );
    await settleSchedules(
      client,
      rows.map((r) => r.scheduled_payment_id),
    );
    // Written at commit with the batch's other entries, in one round trip (src/audit/log.ts).
    for (const r of rows)
      await appendAudit(client, {
        tenantId,
        actorType: 'provider' as const,
        actorId: 'engine',
        action: 'payment.succeeded',
        subjectId: r.id,
        details: {
          invoice_number: r.invoice_number,
          amount_minor: r.amount_minor,
          currency: r.currency.trim(),
          provider: r.provider,
          provider_reference: references.get(r.id) ?? r.provider_reference,
          failure: null,
          note: null,
        },
      });
    return new Set(rows.map((r) => r.id));
  });
}

interface ScheduledExecution {
  /** Who runs it (worker id), for the audit log. */
  workerId?: string;
  /** See ExecuteOptions.retryLaterMs: defer a retryable failure instead of recording it. */
  retryLaterMs?: number;
}

/**
 * One due scheduled payment the worker has claimed, on its own: what made it not plainly ready is dealt
 * with (see the top of this file), then the same phase 1 as a batch's, for this schedule, then phases 2
 * and 3. Returns the payment phase 3 recorded, or null when the schedule was not (or no longer)
 * `scheduled`, or its method was removed.
 */
export async function executeScheduledPayment(
  deps: EngineDeps,
  tenantId: string,
  scheduledId: string,
  options: ScheduledExecution = {},
): Promise<Payment | null> {
  let removedMethodAlert: FailureNotice | undefined;
  const started = await deps.db.withTenant(tenantId, async (client) => {
    // Wait for the lock rather than skip: the only other holders are short claim transactions of other
    // workers (a claim's FOR UPDATE can lock a row it then rejects for its lease), and skipping would
    // leave this worker's own claimed schedule unstarted until its lease ran out.
    const { rows } = await client.query<{ invoice_id: string; status: string; method_status: string | null }>(
      `SELECT s.invoice_id, s.status, m.status AS method_status
         FROM scheduled_payments s LEFT JOIN payment_methods m ON m.id = s.payment_method_id
        WHERE s.id = $1
          FOR UPDATE OF s`,
      [scheduledId],
    );
    const s = rows[0];
    if (s?.status !== 'scheduled') return null;
    if (s.method_status !== 'active') {
      // An admin removed the method after the human approved the schedule: never charge it.
      await client.query(
        "UPDATE scheduled_payments SET status = 'failed', last_error = 'payment_method_invalid', updated_at = now() WHERE id = $1",
        [scheduledId],
      );
      await transitionInvoice(client, s.invoice_id, 'scheduled', 'approved');
      await appendAudit(client, {
        tenantId,
        actorType: 'system',
        actorId: options.workerId ?? 'worker',
        action: 'scheduled_payment.failed',
        subjectId: scheduledId,
        details: { code: 'payment_method_invalid', reason: 'its payment method was removed after approval' },
      });
      const rule = ruleFor('payment_method_invalid');
      const message =
        'a scheduled payment was not made: its payment method was removed after it was approved';
      const alertId = await createAlert(client, {
        tenantId,
        kind: 'payment_request_payment_method',
        code: 'payment_method_invalid',
        message,
        nextStep: rule.nextStep,
        scheduledPaymentId: scheduledId,
      });
      removedMethodAlert = { tenantId, alertId, code: 'payment_method_invalid', message };
      return null;
    }
    const [one] = await startReadySchedules(client, tenantId, [scheduledId], options);
    // Scheduled, its method active a statement ago, and still not ready: its invoice is not `scheduled`
    // (moved by hand), or an admin removed the method just now (the next pass fails the schedule then).
    if (!one)
      throw new Error(
        `scheduled payment ${scheduledId} cannot start: its invoice is not scheduled or its payment method was just removed`,
      );
    return one;
  });
  if (removedMethodAlert) deps.onAlert?.(removedMethodAlert);
  if (!started) return null;
  crashPoint('after_phase1');
  const payment = await executeSubmission(deps, tenantId, started.submission, {
    retryLaterMs: options.retryLaterMs,
  });
  crashPoint('after_phase3');
  // Settling moves only the schedule: the payment phase 3 returned is the payment as it stands.
  await settleSchedule(deps, tenantId, scheduledId);
  return payment;
}

/**
 * A `running` schedule follows its payment: executed once the provider has it (paid, or accepted and
 * settling), failed when the payment failed and the rules did not reschedule it (handleFailure already
 * moved an insufficient-funds failure back to `scheduled`). A payment still waiting to be submitted
 * (a deferred retry, or a crash before phase 2), or whose call got no answer and no reference (a
 * network_timeout: the reconciler may send it again, and it may yet fail), leaves it running. Idempotent; the worker also calls it
 * for schedules whose payment the reconciler resolved.
 */
export async function settleSchedule(deps: EngineDeps, tenantId: string, scheduledId: string): Promise<void> {
  await deps.db.withTenant(tenantId, (client) => settleSchedules(client, [scheduledId]));
}

/** settleSchedule for several schedules of the caller's tenant, in the caller's transaction. */
async function settleSchedules(client: Queryable, scheduledIds: string[]): Promise<void> {
  // No audit entry of its own: the schedule's state is derived from its payment's, and every change of
  // the payment is audited (an extra entry here would also serialize on the tenant's audit chain).
  await client.query(
    `UPDATE scheduled_payments s
        SET status = CASE WHEN p.status = 'failed' THEN 'failed' ELSE 'executed' END,
            last_error = CASE WHEN p.status = 'failed' THEN p.failure_code ELSE s.last_error END,
            updated_at = now()
       FROM payments p
      WHERE s.id = ANY($1::uuid[]) AND s.status = 'running' AND p.id = s.payment_id
        AND NOT (p.status = 'processing' AND (p.recovery_point = 'started' OR p.provider_reference IS NULL))`,
    [scheduledIds],
  );
}
