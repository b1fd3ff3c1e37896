/**
 * The worker: the engine's background jobs, safe to run in any number of processes against one
 * PostgreSQL.
 *
 * Each pass, in order:
 * 1. due scheduled payments (`scheduled_date <= today in the tenant's time zone`): claimed across
 *    tenants in one short system transaction (`FOR UPDATE SKIP LOCKED`, so workers never wait on or
 *    take each other's rows) that stamps a lease (`locked_until`); then each tenant's share of the claim
 *    is executed as one batch by `executeScheduledBatch` (src/payments/scheduled.ts): one phase-1
 *    transaction re-checks the rows under a lock and creates every payment in the same transaction that
 *    moves its schedule to `running`, the provider calls run a bounded number at a time, and one
 *    phase-3 transaction records the successes; anything unusual takes executeScheduledPayment's
 *    per-payment path. A worker that dies after the claim leaves only a lease, which runs out; one that
 *    dies after phase 1 leaves `processing` payments whose `next_check_at` is their first check
 *    (FIRST_CHECK_AFTER_START_MS, as for a pay-now payment), found by step 2. Nothing is ever started
 *    twice.
 * 2. `processing` payments whose `next_check_at` is due (a crash between phases, a timeout, ACH
 *    settling, a deferred retry): claimed the same way, each resolved by `reconcilePayment`, which asks
 *    the provider and, only when the provider has no record of it, re-sends the same payment id (same
 *    idempotency key) up to MAX_SUBMIT_ATTEMPTS times; checks widen (nextCheckDelaySeconds).
 * 3. `running` schedules whose payment is resolved are marked executed or failed.
 * 4. `pending` refunds untouched for a while are resolved by `checkPendingRefund`: one the provider has
 *    answered for (it has a provider reference) is looked up, never sent again (a create with the same
 *    key only replays the first answer); one without is re-driven by `executeRefund` (same refund id,
 *    same key). One still pending at the end of REFUND_REDRIVE_WINDOW_MS raises an alert, once.
 * 5. NACHA payments past their return window settle (src/ach/settlement.ts); stale approvals expire;
 *    idempotency keys past their retention are pruned.
 *
 * Retries: the gateways retry a retryable error at once (3 attempts, backoff with jitter, same key);
 * when the provider is still failing, the worker defers the payment (still `processing`, same id) by
 * `retryDelayMs` (exponential with jitter) and submits it again on a later pass, at most
 * MAX_SUBMIT_ATTEMPTS submissions before the failure is recorded with an alert. Insufficient funds are
 * rescheduled to the next business day by `handleFailure`, up to the tenant's limit.
 *
 * The clock, the sleep between idle passes and the jitter are injectable, so no test waits for real time.
 */
import { hostname } from 'node:os';
import { settleAchPayments } from '../ach/settlement.js';
import { expireStaleApprovals } from '../approvals/approvals.js';
import type { Logger } from '../config.js';
import type { EngineDeps } from '../payments/context.js';
import { crashPoint } from '../payments/crash-points.js';
import { pruneIdempotencyKeys } from '../payments/idempotency.js';
import { RETRY_BASE_DELAY_MS, reconcilePayment } from '../payments/phases.js';
import { checkPendingRefund, REFUND_PENDING_TOO_LONG } from '../payments/refund.js';
import { executeScheduledBatch, settleSchedule } from '../payments/scheduled.js';
import type { Runtime } from '../runtime.js';

/**
 * Submissions of one payment to its provider, first one included, all with the same idempotency key:
 * phase 1 counts the first (`submit_attempts` 1, pay-now and scheduled alike), each re-send one more.
 */
export const MAX_SUBMIT_ATTEMPTS = 3;
/** A payment older than this is never re-sent: only asked about (provider keys are kept 24 h or more). */
export const RESUBMIT_WINDOW_MS = 60 * 60_000;
/** How long a claim keeps other workers off a row; a crashed worker's rows come back after it. */
export const DEFAULT_LEASE_MS = 2 * 60_000;
/** A pending refund is re-driven only when nobody has touched it for this long (its caller may still be on it). */
export const REFUND_GRACE_MS = 60_000;
/**
 * A pending refund is re-sent (same key) only this long after it was created: well inside the 24 hours
 * Stripe keeps an idempotency key, after which a re-send could make a second refund. It is also how long
 * the worker keeps asking the provider about a pending refund it has a reference for: one still pending
 * at the end raises an alert for a human (a card refund settles in minutes to days; half a day with no
 * news while its amount cannot be refunded again is worth a look). After that, the provider's webhooks,
 * get_payment_status with refresh, and the human.
 */
export const REFUND_REDRIVE_WINDOW_MS = 12 * 60 * 60_000;

/**
 * When a pending refund the provider still calls pending is asked about again: every 5 minutes for its
 * first half hour (most settle by then), then hourly; the last check falls at the window's end, where
 * a refund still pending is alerted on.
 */
function refundCheckDelayMs(ageMs: number): number {
  const delay = ageMs < 30 * 60_000 ? 5 * 60_000 : 60 * 60_000;
  return Math.max(60_000, Math.min(delay, REFUND_REDRIVE_WINDOW_MS - ageMs));
}
/**
 * Due schedules claimed at a time. Each tenant's share of a claim is one batch: its SQL is a few
 * set-based statements whatever its size, so bigger batches mean fewer transactions per payment; the
 * bound is the lease (a batch must finish well inside it) and how much one crash leaves to reconcile.
 */
export const DEFAULT_BATCH_SIZE = 100;
/**
 * Rows claimed at a time by the steps that handle theirs one by one (reconciliation, refunds), each
 * possibly waiting on its provider: few enough that a claim is done well inside its lease.
 */
export const ONE_BY_ONE_CLAIM_SIZE = 25;
/** Idle time between passes of `run` when a pass found nothing to do. */
export const DEFAULT_POLL_INTERVAL_MS = 5_000;

export interface WorkerOptions {
  /** Names this process in leases and the audit log; default `host:pid`. */
  workerId?: string;
  /**
   * The worker's notion of now (due dates, leases, checks, settlement, pruning). Default: the database's
   * clock, the one time every process shares; tests inject their own.
   */
  clock?: () => Date;
  /** Waits between idle passes of `run`; must resolve early when the signal aborts. */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  /**
   * Due schedules claimed per claim query (a claim's schedules of one tenant are executed as one batch);
   * the one-by-one steps claim at most ONE_BY_ONE_CLAIM_SIZE of theirs.
   */
  batchSize?: number;
  /** Provider calls of a batch in flight at once; default 16 (DEFAULT_CALLS_IN_FLIGHT, scheduled.ts). */
  concurrency?: number;
  /** Batches (one tenant's share of a claim) executed at the same time; default 4. */
  batchesInFlight?: number;
  leaseMs?: number;
  pollIntervalMs?: number;
  /** Source of jitter in [0, 1); default Math.random. */
  random?: () => number;
  logger?: Pick<Logger, 'info' | 'warn' | 'error'>;
}

export interface PassSummary {
  worker_id: string;
  scheduled: {
    claimed: number;
    started: number;
    paid: number;
    pending: number;
    deferred: number;
    failed: number;
  };
  reconciled: { checked: number; succeeded: number; failed: number; still_processing: number };
  schedules_settled: number;
  /**
   * Pending refunds: `looked_up` at the provider, `redriven` (sent again, same key, no reference yet),
   * their outcomes, and `alerted`: still pending at the end of the window, a human told.
   */
  refunds: {
    looked_up: number;
    redriven: number;
    succeeded: number;
    failed: number;
    pending: number;
    alerted: number;
  };
  /** NACHA payments whose return window ended without a return: succeeded (settleAchPayments). */
  ach_settled: number;
  approvals_expired: number;
  idempotency_keys_pruned: number;
  errors: number;
  /** True when `run`'s signal stopped the pass early (claimed rows not started were released). */
  aborted: boolean;
}

export interface Worker {
  readonly workerId: string;
  /** One pass over everything due now; returns what it did. */
  runOnce(options?: { signal?: AbortSignal }): Promise<PassSummary>;
  /** Passes until `signal` aborts; the batch in flight finishes, claimed ones not started are released. */
  run(options: { signal: AbortSignal }): Promise<void>;
}

/** Exponential backoff with jitter for the worker's deferral after the n-th failed submission. */
export function retryDelayMs(submission: number, random: () => number = Math.random): number {
  const ceiling = RETRY_BASE_DELAY_MS * 2 ** Math.max(0, submission - 1);
  // "Equal jitter": at least half the ceiling, so a retry never comes back immediately, and the rest
  // random, so a fleet of workers that failed together does not retry together.
  return Math.round(ceiling / 2 + random() * (ceiling / 2));
}

const realSleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });

function isRuntime(x: Runtime | EngineDeps): x is Runtime {
  return 'deps' in x && 'config' in x;
}

interface Claimed {
  id: string;
  tenant_id: string;
}

export function createWorker(runtimeOrDeps: Runtime | EngineDeps, options: WorkerOptions = {}): Worker {
  const deps = isRuntime(runtimeOrDeps) ? runtimeOrDeps.deps : runtimeOrDeps;
  const logger = options.logger ?? (isRuntime(runtimeOrDeps) ? runtimeOrDeps.logger : undefined);
  const workerId = options.workerId ?? `${hostname()}:${process.pid}`;
  const injectedClock = options.clock;
  /**
   * Now, for due dates, leases, checks, settlement and pruning: the injected clock (tests), else the
   * database's, the one time every process shares. A worker on a machine whose own clock runs ahead
   * must not pay a schedule before its date, settle an ACH payment inside its return window, or prune
   * idempotency keys early.
   */
  const now = async (): Promise<Date> => {
    if (injectedClock) return injectedClock();
    const { rows } = await db.pool.query<{ now: Date }>('SELECT now() AS now');
    return rows[0]!.now;
  };
  const sleep = options.sleep ?? realSleep;
  const batchSize = options.batchSize ?? DEFAULT_BATCH_SIZE;
  const oneByOneClaimSize = Math.min(batchSize, ONE_BY_ONE_CLAIM_SIZE);
  const batchesInFlight = Math.max(1, options.batchesInFlight ?? 4);
  const leaseS = (options.leaseMs ?? DEFAULT_LEASE_MS) / 1000;
  const random = options.random ?? Math.random;
  const { db } = deps;

  /** Due schedules not leased by a live worker, leased to this one (`now`: see `now()` above). */
  function claimSchedules(now: Date, exclude: string[]): Promise<Claimed[]> {
    return db.withSystem(async (client) => {
      const { rows } = await client.query<Claimed>(
        `WITH due AS (
           SELECT s.id FROM scheduled_payments s JOIN tenants t ON t.id = s.tenant_id
            WHERE s.status = 'scheduled'
              AND s.scheduled_date <= ($1::timestamptz AT TIME ZONE t.timezone)::date
              AND (s.next_attempt_at IS NULL OR s.next_attempt_at <= $1)
              AND (s.locked_until IS NULL OR s.locked_until <= $1)
              AND NOT (s.id = ANY($5::uuid[]))
            ORDER BY s.scheduled_date, s.created_at
            LIMIT $2
              FOR UPDATE OF s SKIP LOCKED)
         UPDATE scheduled_payments s SET locked_until = $1::timestamptz + make_interval(secs => $3), locked_by = $4
           FROM due WHERE s.id = due.id
         RETURNING s.id, s.tenant_id`,
        [now, batchSize, leaseS, workerId, exclude],
      );
      return rows;
    });
  }

  /** Give back claimed schedules this worker will not start (shutdown): no one waits for the lease. */
  async function releaseSchedules(ids: string[]): Promise<void> {
    if (ids.length === 0) return;
    await db.withSystem((client) =>
      client.query(
        `UPDATE scheduled_payments SET locked_until = NULL, locked_by = NULL
          WHERE id = ANY($1::uuid[]) AND status = 'scheduled' AND locked_by = $2`,
        [ids, workerId],
      ),
    );
  }

  /**
   * Processing payments due a check. Phase 1 gives every payment its first check; one with none (a
   * pay-now payment written before it did so) is due once untouched for a lease. A NACHA payment past
   * phase 1 is not one: it is queued for or sent in a file, there is no provider to ask, and it ends by
   * settlement or a return file; only one stopped at `started` needs recovering.
   */
  function claimPayments(
    now: Date,
    exclude: string[],
  ): Promise<(Claimed & { scheduled_payment_id: string | null })[]> {
    return db.withSystem(async (client) => {
      const { rows } = await client.query<Claimed & { scheduled_payment_id: string | null }>(
        `WITH due AS (
           SELECT id FROM payments
            WHERE status = 'processing' AND NOT (provider = 'nacha' AND recovery_point <> 'started')
              AND (next_check_at <= $1
                   OR (next_check_at IS NULL AND updated_at <= $1::timestamptz - make_interval(secs => $3)))
              AND NOT (id = ANY($4::uuid[]))
            ORDER BY next_check_at NULLS FIRST
            LIMIT $2
              FOR UPDATE SKIP LOCKED)
         UPDATE payments p SET next_check_at = $1::timestamptz + make_interval(secs => $3)
           FROM due WHERE p.id = due.id
         RETURNING p.id, p.tenant_id, p.scheduled_payment_id`,
        [now, oneByOneClaimSize, leaseS, exclude],
      );
      return rows;
    });
  }

  /**
   * Pending refunds due a check: untouched for the grace period, not leased, and either inside the
   * window or past it without the alert yet (its last check raises it; alerted ones are left to humans,
   * webhooks and refresh). `locked_until` is both the lease and, after a lookup, the next check.
   */
  function claimRefunds(now: Date, exclude: string[]): Promise<(Claimed & { created_at: Date })[]> {
    return db.withSystem(async (client) => {
      const { rows } = await client.query<Claimed & { created_at: Date }>(
        `WITH due AS (
           SELECT r.id FROM refunds r
            WHERE r.status = 'pending' AND r.updated_at <= $1::timestamptz - make_interval(secs => $5)
              AND (r.created_at > $1::timestamptz - make_interval(secs => $6)
                   OR NOT EXISTS (SELECT 1 FROM alerts a WHERE a.refund_id = r.id AND a.kind = $7))
              AND (r.locked_until IS NULL OR r.locked_until <= $1)
              AND NOT (r.id = ANY($4::uuid[]))
            ORDER BY r.updated_at
            LIMIT $2
              FOR UPDATE OF r SKIP LOCKED)
         UPDATE refunds r SET locked_until = $1::timestamptz + make_interval(secs => $3)
           FROM due WHERE r.id = due.id
         RETURNING r.id, r.tenant_id, r.created_at`,
        [
          now,
          oneByOneClaimSize,
          leaseS,
          exclude,
          REFUND_GRACE_MS / 1000,
          REFUND_REDRIVE_WINDOW_MS / 1000,
          REFUND_PENDING_TOO_LONG,
        ],
      );
      return rows;
    });
  }

  /** A looked-up refund still pending is checked again later, not on every pass. */
  async function deferRefundCheck(id: string, until: Date): Promise<void> {
    await db.withSystem((client) =>
      client.query(`UPDATE refunds SET locked_until = $2 WHERE id = $1 AND status = 'pending'`, [id, until]),
    );
  }

  /** Running schedules whose payment is no longer waiting for a submission or an unknown outcome (settleSchedule). */
  function settleableSchedules(): Promise<Claimed[]> {
    return db.withSystem(async (client) => {
      const { rows } = await client.query<Claimed>(
        `SELECT s.id, s.tenant_id FROM scheduled_payments s JOIN payments p ON p.id = s.payment_id
          WHERE s.status = 'running' AND NOT (p.status = 'processing' AND (p.recovery_point = 'started' OR p.provider_reference IS NULL))
          LIMIT 1000`,
      );
      return rows;
    });
  }

  async function runOnce(runOptions: { signal?: AbortSignal } = {}): Promise<PassSummary> {
    const signal = runOptions.signal;
    const summary: PassSummary = {
      worker_id: workerId,
      scheduled: { claimed: 0, started: 0, paid: 0, pending: 0, deferred: 0, failed: 0 },
      reconciled: { checked: 0, succeeded: 0, failed: 0, still_processing: 0 },
      schedules_settled: 0,
      refunds: { looked_up: 0, redriven: 0, succeeded: 0, failed: 0, pending: 0, alerted: 0 },
      ach_settled: 0,
      approvals_expired: 0,
      idempotency_keys_pruned: 0,
      errors: 0,
      aborted: false,
    };
    const stop = () => {
      if (signal?.aborted) summary.aborted = true;
      return summary.aborted;
    };
    const failed = (what: string, id: string, error: unknown) => {
      summary.errors += 1;
      logger?.error({ err: error, id, worker: workerId }, `worker: ${what} failed; it will be retried`);
    };

    // 1. Due scheduled payments.
    const seenSchedules: string[] = [];
    for (;;) {
      if (stop()) break;
      const claimed = await claimSchedules(await now(), seenSchedules);
      if (claimed.length === 0) break;
      crashPoint('after_claim');
      summary.scheduled.claimed += claimed.length;
      // One batch per tenant (a tenant's transactions are scoped to it), in the order claimed.
      const byTenant = new Map<string, string[]>();
      for (const s of claimed) byTenant.set(s.tenant_id, [...(byTenant.get(s.tenant_id) ?? []), s.id]);
      const batches = [...byTenant];
      // A few tenants' batches at a time: a claim of many small tenants must not wait on their provider
      // calls one tenant after another.
      const lane = async () => {
        for (let batch = batches.shift(); batch; batch = batches.shift()) {
          if (stop()) {
            batches.unshift(batch);
            return;
          }
          const [tenantId, ids] = batch;
          const results = await executeScheduledBatch(deps, tenantId, ids, {
            workerId,
            retryLaterMs: () => retryDelayMs(1, random),
            callsInFlight: options.concurrency,
            onBatchFailed: (phase, error, payments) =>
              logger?.warn(
                { err: error, worker: workerId, tenantId, phase, payments },
                `worker: a batch's ${phase} failed as a whole; its payments go one by one`,
              ),
          });
          const moved = new Set<string>();
          for (const r of results) {
            if ('error' in r) {
              failed('scheduled payment', r.scheduledId, r.error);
              continue;
            }
            const payment = r.payment;
            if (!payment) continue;
            if (payment.status !== 'failed') moved.add(r.scheduledId);
            summary.scheduled.started += 1;
            if (payment.status === 'succeeded') summary.scheduled.paid += 1;
            else if (payment.status === 'failed') summary.scheduled.failed += 1;
            else if (payment.recoveryPoint === 'started') summary.scheduled.deferred += 1;
            else summary.scheduled.pending += 1;
          }
          // Later claims of this pass skip the schedules that may be `scheduled` again (not started, an
          // error, a failure the rules rescheduled): each runs at most once a pass. The others are
          // running or done, which no claim takes, so the list stays short however many a pass executes.
          for (const id of ids) if (!moved.has(id)) seenSchedules.push(id);
        }
      };
      await Promise.all(Array.from({ length: Math.min(batchesInFlight, batches.length) }, lane));
      // Stopped: give back what was claimed and not started.
      if (batches.length > 0) await releaseSchedules(batches.flatMap(([, ids]) => ids));
    }

    // 2. Payments whose outcome we do not know yet.
    const seenPayments: string[] = [];
    for (;;) {
      if (stop()) break;
      const claimed = await claimPayments(await now(), seenPayments);
      if (claimed.length === 0) break;
      for (const p of claimed) {
        seenPayments.push(p.id);
        // A claimed payment not checked now keeps its lease as next_check_at: it is looked at later.
        if (stop()) break;
        try {
          const payment = await reconcilePayment(deps, p.tenant_id, p.id, {
            now: await now(),
            resubmit: {
              maxAttempts: MAX_SUBMIT_ATTEMPTS,
              withinMs: RESUBMIT_WINDOW_MS,
              retryLaterMs: (n) => retryDelayMs(n, random),
            },
          });
          summary.reconciled.checked += 1;
          if (payment.status === 'succeeded') summary.reconciled.succeeded += 1;
          else if (payment.status === 'failed') summary.reconciled.failed += 1;
          else summary.reconciled.still_processing += 1;
          if (p.scheduled_payment_id) await settleSchedule(deps, p.tenant_id, p.scheduled_payment_id);
        } catch (error) {
          failed('reconciliation', p.id, error);
        }
      }
    }

    // 3. Schedules whose payment was resolved elsewhere (a webhook, or a crash after phase 3).
    if (!stop()) {
      for (const s of await settleableSchedules()) {
        try {
          await settleSchedule(deps, s.tenant_id, s.id);
          summary.schedules_settled += 1;
        } catch (error) {
          failed('schedule settlement', s.id, error);
        }
      }
    }

    // 4. Pending refunds.
    const seenRefunds: string[] = [];
    for (;;) {
      if (stop()) break;
      const claimed = await claimRefunds(await now(), seenRefunds);
      if (claimed.length === 0) break;
      for (const r of claimed) {
        seenRefunds.push(r.id);
        if (stop()) break;
        try {
          const checkedAt = await now();
          const check = await checkPendingRefund(deps, r.tenant_id, r.id, {
            now: checkedAt,
            redriveWindowMs: REFUND_REDRIVE_WINDOW_MS,
          });
          if (check.action === 'none' && !check.alerted) continue;
          if (check.action !== 'none') summary.refunds[check.action] += 1;
          summary.refunds[check.status] += 1;
          if (check.alerted) summary.refunds.alerted += 1;
          if (check.action === 'looked_up' && check.status === 'pending' && !check.alerted) {
            const age = checkedAt.getTime() - r.created_at.getTime();
            await deferRefundCheck(r.id, new Date(checkedAt.getTime() + refundCheckDelayMs(age)));
          }
        } catch (error) {
          failed('refund', r.id, error);
        }
      }
    }

    // 5. Housekeeping.
    if (!stop()) {
      try {
        summary.ach_settled = (
          await settleAchPayments(db, await now(), { onAlert: deps.onAlert })
        ).settled.length;
        summary.approvals_expired = await expireStaleApprovals(db);
        summary.idempotency_keys_pruned = await pruneIdempotencyKeys(db, await now());
      } catch (error) {
        failed('housekeeping', workerId, error);
      }
    }
    return summary;
  }

  function didWork(s: PassSummary): boolean {
    return (
      s.scheduled.claimed +
        s.reconciled.checked +
        s.schedules_settled +
        s.refunds.redriven +
        s.refunds.looked_up +
        s.refunds.alerted >
      0
    );
  }

  return {
    workerId,
    runOnce,
    async run({ signal }) {
      logger?.info({ worker: workerId }, 'worker started');
      while (!signal.aborted) {
        let summary: PassSummary | undefined;
        try {
          summary = await runOnce({ signal });
        } catch (error) {
          // The database went away mid-pass, say: the leases protect the rows; try again after a pause.
          logger?.error({ err: error, worker: workerId }, 'worker pass failed');
        }
        if (summary && didWork(summary)) logger?.info({ summary }, 'worker pass');
        if (!summary || !didWork(summary))
          await sleep(options.pollIntervalMs ?? DEFAULT_POLL_INTERVAL_MS, signal);
      }
      logger?.info({ worker: workerId }, 'worker stopped');
    },
  };
}
