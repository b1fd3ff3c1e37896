/**
 * Phases 2 and 3 of every payment (Brandur Leach's atomic phases): phase 1 has committed a `processing`
 * payment; here we call the provider with an idempotency key derived from the payment id, then record
 * the outcome in one transaction. No transaction is held open across the provider call. A crash between
 * phases leaves a `processing` payment that `reconcilePayment` resolves by asking the provider.
 */
import { appendAudit } from '../audit/log.js';
import type { Queryable } from '../db/pool.js';
import {
  type Gateway,
  GatewayError,
  type GatewayFailure,
  type PaymentOutcome,
  type PayRequest,
} from '../gateways/types.js';
import { formatMoney } from '../money.js';
import { createAlert, HELD_ALERT_KIND, ruleFor } from './alerts.js';
import { nextBusinessDay } from './calendar.js';
import type { EngineDeps, FailureNotice } from './context.js';
import { crashPoint } from './crash-points.js';
import { transitionInvoice } from './invoices.js';
import {
  applyPaymentOutcome,
  getPayment,
  insertPaymentStatement,
  type NewPayment,
  type Payment,
} from './payments.js';

/**
 * First deferral of a payment the provider keeps failing (a pay-now call's, and the worker's base, which
 * doubles per submission): sent again later under the same key.
 */
export const RETRY_BASE_DELAY_MS = 30_000;

/** How soon the reconciler first asks about a payment whose outcome we do not know yet. */
export const FIRST_CHECK_DELAY_S = 60;

function gatewayFor(deps: EngineDeps, payment: Pick<Payment, 'provider'>): Gateway {
  const gateway = deps.gateway(payment.provider);
  if (!gateway)
    throw new GatewayError(
      'configuration_error',
      `the ${payment.provider} provider is not configured`,
      payment.provider,
    );
  return gateway;
}

export interface ExecuteOptions {
  /**
   * The worker's deferral of a retryable failure (api_error, rate_limited) that outlasted the gateway's
   * own quick retries and that the provider confirms it has no record of: instead of recording the
   * payment failed, leave it `processing` at recovery point `started` and due for another submission,
   * with the SAME payment id (so the same idempotency key), in this many milliseconds. Absent: a
   * default delay (a pay-now call; the worker sends it again). null (the worker's last attempt): the
   * failure is recorded.
   */
  retryLaterMs?: number | null;
  /**
   * An earlier send of this payment got no answer (it was at `provider_called` with no reference): it may
   * already have been made. A retryable failure with no record at the provider on this send is then
   * recorded as an unknown outcome, never as failed: the provider's lookup can lag behind that charge.
   */
  mayAlreadyBeMade?: boolean;
}

/**
 * Phase 2 and 3 for a payment phase 1 left at recovery point `started`, with the submission that phase
 * 1 loaded in its transaction (pay-now, a scheduled payment, the reconciler's resend). Returns the
 * payment as recorded. Never throws for a provider failure: that is recorded (failed, or processing when
 * unknown).
 */
export async function executeSubmission(
  deps: EngineDeps,
  tenantId: string,
  submission: Submission,
  options: ExecuteOptions = {},
): Promise<Payment> {
  const { paymentId } = submission;
  if (submission.status !== 'processing' || submission.recoveryPoint !== 'started')
    return (await deps.db.withTenant(tenantId, (client) => getPayment(client, paymentId)))!;
  const answer = await callProvider(deps, submission);
  return recordProviderAnswer(deps, tenantId, paymentId, answer, options);
}

/** What phase 2 needs of a payment: where it stands, and the request to send its provider. */
export interface Submission {
  paymentId: string;
  provider: Payment['provider'];
  status: Payment['status'];
  recoveryPoint: Payment['recoveryPoint'];
  request: PayRequest;
}

interface SubmissionRow {
  id: string;
  tenant_id: string;
  amount_minor: number;
  currency: string;
  rail: Payment['rail'];
  provider: Payment['provider'];
  status: Payment['status'];
  recovery_point: Payment['recoveryPoint'];
  invoice_number: string;
  vendor_name: string;
  stripe_account: string | null;
  paypal_email: string | null;
  provider_token: string;
  provider_customer: string | null;
}

/** What phase 2 sends for the payments in `payments` (a table, or a statement's RETURNING). */
function selectSubmissions(payments: string): string {
  return `SELECT p.id, p.tenant_id, p.amount_minor, p.currency, p.rail, p.provider, p.status, p.recovery_point,
            i.number AS invoice_number, c.name AS vendor_name, c.stripe_account, c.paypal_email,
            m.provider_token, m.provider_customer
       FROM ${payments} p JOIN invoices i ON i.id = p.invoice_id JOIN counterparties c ON c.id = i.counterparty_id
       JOIN payment_methods m ON m.id = p.payment_method_id`;
}

/** Phase 2's input for several payments of the caller's tenant, in one query. */
export async function loadSubmissions(client: Queryable, paymentIds: string[]): Promise<Submission[]> {
  const { rows } = await client.query<SubmissionRow>(
    `${selectSubmissions('payments')} WHERE p.id = ANY($1::uuid[])`,
    [paymentIds],
  );
  return rows.map(toSubmission);
}

/** Phase 1's payment row written (insertPaymentStatement) and phase 2's input read back, in one statement. */
export async function insertSubmission(client: Queryable, payment: NewPayment): Promise<Submission> {
  const insert = insertPaymentStatement(payment);
  const { rows } = await client.query<SubmissionRow>(
    `WITH inserted AS (${insert.text}) ${selectSubmissions('inserted')}`,
    insert.values,
  );
  return toSubmission(rows[0]!);
}

function toSubmission(r: SubmissionRow): Submission {
  return {
    paymentId: r.id,
    provider: r.provider,
    status: r.status,
    recoveryPoint: r.recovery_point,
    request: {
      paymentId: r.id,
      tenantId: r.tenant_id,
      amountMinor: r.amount_minor,
      currency: r.currency.trim(),
      rail: r.rail,
      paymentMethodToken: r.provider_token,
      providerCustomerId: r.provider_customer ?? undefined,
      payee: {
        name: r.vendor_name,
        stripeAccount: r.stripe_account ?? undefined,
        paypalEmail: r.paypal_email ?? undefined,
      },
      invoiceNumber: r.invoice_number,
      description: `Invoice ${r.invoice_number} (${r.vendor_name})`,
    },
  };
}

/** What phase 2 learned: the provider's outcome, or the failure that left us without one. */
export interface ProviderAnswer {
  outcome: PaymentOutcome | null;
  failure?: GatewayError;
}

/**
 * Phase 2: send the payment to its provider (idempotency key derived from the payment id) and, when a
 * retryable error outlasted the gateway's retries, ask once what became of it. Never throws for a
 * provider failure; no database work.
 */
export async function callProvider(
  deps: EngineDeps,
  submission: Pick<Submission, 'paymentId' | 'provider' | 'request'>,
): Promise<ProviderAnswer> {
  const { paymentId } = submission;
  let outcome: PaymentOutcome | null = null;
  let failure: GatewayError | undefined;
  try {
    const gateway = gatewayFor(deps, submission);
    // Each gateway applies our one retry policy (src/gateways/retry.ts) around its own calls.
    outcome = await gateway.pay(submission.request);
  } catch (error) {
    if (!(error instanceof GatewayError)) throw error;
    failure = error;
    // After retries an api_error leaves the outcome in doubt: ask once before calling it failed.
    if (error.code === 'api_error' || error.code === 'rate_limited') {
      try {
        outcome = await gatewayFor(deps, submission).retrieve({
          paymentId,
          amount: { amountMinor: submission.request.amountMinor, currency: submission.request.currency },
        });
        if (outcome) failure = undefined;
      } catch {
        failure = new GatewayError(
          'network_timeout',
          `${error.message}; and the provider could not be asked`,
          submission.provider,
          { outcomeUnknown: true },
        );
      }
    }
  }
  crashPoint('after_provider_call');
  return { outcome, failure };
}

/** Phase 3 for one payment: record what phase 2 learned, or defer a retryable failure (see ExecuteOptions). */
export async function recordProviderAnswer(
  deps: EngineDeps,
  tenantId: string,
  paymentId: string,
  { outcome, failure }: ProviderAnswer,
  options: ExecuteOptions = {},
): Promise<Payment> {
  // A retryable failure with no record at the provider is not a final "failed": the provider's search
  // can lag behind a charge that did happen. The payment stays processing and the worker sends it again
  // later under the same idempotency key (the provider acts at most once), asking first.
  const retryable = failure && (failure.code === 'api_error' || failure.code === 'rate_limited');
  if (options.retryLaterMs !== null && !outcome && retryable) {
    return deferRetry(deps, tenantId, paymentId, failure, options.retryLaterMs ?? RETRY_BASE_DELAY_MS);
  }
  if (!outcome && retryable && options.mayAlreadyBeMade) {
    const unknown = new GatewayError('network_timeout', failure.message, failure.provider, {
      ...failure.details,
      outcomeUnknown: true,
    });
    return recordOutcome(deps, tenantId, paymentId, outcome, unknown);
  }
  return recordOutcome(deps, tenantId, paymentId, outcome, failure);
}

/** Leave a payment the provider never accepted due for another submission with the same key. */
async function deferRetry(
  deps: EngineDeps,
  tenantId: string,
  paymentId: string,
  failure: GatewayError,
  delayMs: number,
): Promise<Payment> {
  return deps.db.withTenant(tenantId, async (client) => {
    const { rowCount } = await client.query(
      `UPDATE payments SET next_check_at = now() + make_interval(secs => $2), updated_at = now()
       WHERE id = $1 AND status = 'processing' AND recovery_point = 'started'`,
      [paymentId, delayMs / 1000],
    );
    if (rowCount) {
      await appendAudit(client, {
        tenantId,
        actorType: 'system',
        actorId: 'worker',
        action: 'payment.retry_scheduled',
        subjectId: paymentId,
        details: { failure: { code: failure.code, message: failure.message }, retry_in_ms: delayMs },
      });
    }
    return (await getPayment(client, paymentId))!;
  });
}

/** Phase 3: record what we learned, in one transaction, with alerts and the failure rules. */
async function recordOutcome(
  deps: EngineDeps,
  tenantId: string,
  paymentId: string,
  outcome: PaymentOutcome | null,
  failure: GatewayError | undefined,
): Promise<Payment> {
  const notices: FailureNotice[] = [];
  const recorded = await deps.db.withTenant(tenantId, async (client) => {
    const source = { actorType: 'provider' as const, actorId: 'engine' };
    if (outcome && outcome.status !== 'processing') {
      const applied = await applyPaymentOutcome(client, paymentId, outcome, source);
      if (applied.changed && applied.payment.status === 'failed') {
        notices.push(
          await handleFailure(
            client,
            applied.payment,
            outcome.failure ?? { code: 'declined', message: 'declined' },
          ),
        );
      }
      return applied.payment;
    }
    if (outcome) {
      // Accepted but not settled (ACH, PayPal pending): webhooks or the reconciler finish it.
      await markAwaitingProvider(
        client,
        paymentId,
        outcome.providerReference,
        'the provider accepted the payment; settlement pending',
      );
      return (await getPayment(client, paymentId))!;
    }
    const error = failure!;
    // No answer, or an answer that says the provider is still working on it (Stripe's 409 for a key in
    // use): it may yet be made, so it is never recorded failed; the reconciler asks.
    if (error.code === 'network_timeout' || error.details.outcomeUnknown) {
      await markAwaitingProvider(client, paymentId, null, `outcome unknown: ${error.message}`);
      const payment = (await getPayment(client, paymentId))!;
      notices.push(
        await alertFor(client, payment, {
          code: 'network_timeout',
          message: error.message,
          providerCode: error.details.providerCode,
        }),
      );
      return payment;
    }
    const applied = await applyPaymentOutcome(
      client,
      paymentId,
      {
        status: 'failed',
        failure: { code: error.code, message: error.message, providerCode: error.details.providerCode },
      },
      source,
    );
    if (applied.changed)
      notices.push(
        await handleFailure(client, applied.payment, {
          code: error.code,
          message: error.message,
          providerCode: error.details.providerCode,
        }),
      );
    return applied.payment;
  });
  for (const notice of notices) deps.onAlert?.(notice);
  return recorded;
}

/**
 * Phase 3 of a payment the provider accepted but has not settled. A payment already in a NACHA file is
 * left alone: its provider reference is the file's trace number, which a late phase 3 (the slow
 * original process, after the reconciler queued the payment and an export took it) must not replace
 * with the gateway's queued reference, or a return for that trace would find nothing.
 */
async function markAwaitingProvider(
  client: Queryable,
  paymentId: string,
  providerReference: string | null,
  note: string,
  options: { onlyFromStarted?: boolean } = {},
): Promise<void> {
  const { rows } = await client.query<{ tenant_id: string }>(
    `UPDATE payments SET recovery_point = 'provider_called', provider_reference = COALESCE($2, provider_reference),
            next_check_at = now() + make_interval(secs => $3), updated_at = now()
     WHERE id = $1 AND status = 'processing' AND ach_file_id IS NULL
       AND (NOT $4 OR recovery_point = 'started') RETURNING tenant_id`,
    [paymentId, providerReference, FIRST_CHECK_DELAY_S, options.onlyFromStarted ?? false],
  );
  if (rows[0]) {
    await appendAudit(client, {
      tenantId: rows[0].tenant_id,
      actorType: 'provider',
      actorId: 'engine',
      action: 'payment.processing',
      subjectId: paymentId,
      details: { provider_reference: providerReference, note },
    });
  }
}

async function alertFor(
  client: Queryable,
  payment: Payment,
  failure: GatewayFailure,
  extra = '',
): Promise<FailureNotice> {
  const rule = ruleFor(failure.code);
  const message = `Payment of invoice ${payment.invoiceNumber} (${payment.amountMinor} minor units ${payment.currency}, ${payment.rail}) ${
    failure.code === 'network_timeout' ? 'has an unknown outcome' : 'failed'
  }: ${failure.message}${failure.providerCode ? ` [${failure.providerCode}]` : ''}`;
  const alertId = await createAlert(client, {
    tenantId: payment.tenantId,
    kind: `payment_${rule.rule}`,
    code: failure.code,
    message,
    nextStep: rule.nextStep + extra,
    severity: rule.severity,
    paymentId: payment.id,
    scheduledPaymentId: payment.scheduledPaymentId ?? undefined,
  });
  return { tenantId: payment.tenantId, alertId, code: failure.code, message, paymentId: payment.id };
}

/**
 * The seed's rules for a failed payment: always an alert; insufficient funds also reschedules to the
 * next business day (up to the tenant's limit), reusing the same human approval for the same amount.
 */
export async function handleFailure(
  client: Queryable,
  payment: Payment,
  failure: GatewayFailure,
): Promise<FailureNotice> {
  const rule = ruleFor(failure.code);
  if (rule.rule !== 'reschedule') return alertFor(client, payment, failure);
  // "Today" by the database's clock, the one time every process shares (as the worker's due dates):
  // a machine whose clock is off must not reschedule to a day already past, or one too far ahead.
  const { rows: tenantRows } = await client.query<{ today: string; max: number }>(
    `SELECT to_char(now() AT TIME ZONE timezone, 'YYYY-MM-DD') AS today,
            max_insufficient_funds_reschedules AS max
       FROM tenants WHERE id = $1`,
    [payment.tenantId],
  );
  const tenant = tenantRows[0]!;
  const previous = payment.scheduledPaymentId
    ? ((
        await client.query<{ reschedule_count: number }>(
          'SELECT reschedule_count FROM scheduled_payments WHERE id = $1',
          [payment.scheduledPaymentId],
        )
      ).rows[0]?.reschedule_count ?? 0)
    : 0;
  if (previous >= tenant.max) {
    if (payment.scheduledPaymentId) {
      await client.query(
        "UPDATE scheduled_payments SET status = 'failed', last_error = $2, updated_at = now() WHERE id = $1",
        [payment.scheduledPaymentId, failure.code],
      );
    }
    return alertFor(
      client,
      payment,
      failure,
      `; it was already rescheduled ${previous} times (the limit), so it now needs a human`,
    );
  }
  const date = nextBusinessDay(tenant.today);
  let scheduledId = payment.scheduledPaymentId;
  if (scheduledId) {
    await client.query(
      `UPDATE scheduled_payments SET status = 'scheduled', scheduled_date = $2, reschedule_count = reschedule_count + 1, payment_id = NULL,
              attempts = 0, next_attempt_at = NULL, last_error = $3, updated_at = now() WHERE id = $1`,
      [scheduledId, date, failure.code],
    );
  } else {
    const { rows } = await client.query<{ id: string }>(
      `INSERT INTO scheduled_payments (tenant_id, invoice_id, agent_key_id, approval_id, amount_minor, currency, rail, payment_method_id,
                                       scheduled_date, reschedule_count, last_error, approved_by)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 1, $10, $11) RETURNING id`,
      [
        payment.tenantId,
        payment.invoiceId,
        payment.agentKeyId,
        payment.approvalId,
        payment.amountMinor,
        payment.currency,
        payment.rail,
        payment.paymentMethodId,
        date,
        failure.code,
        payment.approvedBy,
      ],
    );
    scheduledId = rows[0]!.id;
  }
  await transitionInvoice(client, payment.invoiceId, 'approved', 'scheduled');
  await appendAudit(client, {
    tenantId: payment.tenantId,
    actorType: 'system',
    actorId: 'engine',
    action: 'payment.rescheduled',
    subjectId: scheduledId,
    details: { payment_id: payment.id, scheduled_date: date, reason: failure.code, reschedule: previous + 1 },
  });
  return alertFor(
    client,
    { ...payment, scheduledPaymentId: scheduledId },
    failure,
    ` (retry on ${date}, reschedule ${previous + 1} of ${tenant.max})`,
  );
}

export interface ReconcileOptions {
  /** A `started` payment the provider has no record of is failed as not_submitted after this long. */
  notSubmittedAfterMs?: number;
  /** The worker's clock (tests move it); default the real one. */
  now?: Date;
  /**
   * The worker's recovery of a payment the provider has no record of and that never got past phase 2
   * (its process died first, or the worker deferred a retryable failure): send phase 2 again with the
   * SAME payment id, so the same idempotency key, and the provider cannot act twice. Only while the
   * payment is younger than `withinMs` (well inside the providers' idempotency-key retention, so a
   * request that did arrive but is not yet searchable is still deduplicated) and at most `maxAttempts`
   * submissions in all. Absent (status refresh): only ask.
   */
  resubmit?: { maxAttempts: number; withinMs: number; retryLaterMs?: (submission: number) => number };
}

/**
 * Resolve a payment whose outcome we do not know: ask the provider, never pay again. A payment that
 * phase 1 started but never reached the provider (no record there) is, with `resubmit`, submitted again
 * under its own idempotency key; otherwise, long enough ago, it is failed as `not_submitted`: a human
 * approves again rather than us guessing.
 */
export async function reconcilePayment(
  deps: EngineDeps,
  tenantId: string,
  paymentId: string,
  options: ReconcileOptions = {},
): Promise<Payment> {
  const now = options.now ?? new Date();
  const payment = await deps.db.withTenant(tenantId, (client) => getPayment(client, paymentId));
  if (payment?.status !== 'processing') return payment!;
  const gateway = gatewayFor(deps, payment);
  const age = now.getTime() - payment.createdAt.getTime();
  // Whether "no record" still means "never made" (PayPal forgets the request id it finds orders by).
  const noRecordConclusive = age <= gateway.noRecordConclusiveForMs;
  let outcome: PaymentOutcome | null;
  try {
    outcome = await gateway.retrieve({
      paymentId,
      providerReference: payment.providerReference ?? undefined,
      amount: { amountMinor: payment.amountMinor, currency: payment.currency },
    });
  } catch (error) {
    if (!(error instanceof GatewayError)) throw error;
    await deps.db.withTenant(tenantId, (client) =>
      client.query(
        `UPDATE payments SET attempts = attempts + 1, next_check_at = ${NEXT_CHECK} WHERE id = $1`,
        [paymentId, nextCheckDelaySeconds(payment, now.getTime()), options.resubmit !== undefined],
      ),
    );
    return payment;
  }
  // NACHA's phase 2 only queues the payment for the next file (nothing leaves paygate until an admin
  // exports), and its retrieve answers "processing" even for a payment it never queued. So a NACHA
  // payment whose process stopped before phase 3 is completed here, or it would wait at `started`,
  // which no export takes, for good. No window or attempt limit: queueing is not a send.
  if (
    payment.provider === 'nacha' &&
    payment.recoveryPoint === 'started' &&
    outcome?.status === 'processing'
  ) {
    await deps.db.withTenant(tenantId, (client) =>
      markAwaitingProvider(
        client,
        paymentId,
        outcome.providerReference,
        'queued for the next NACHA file (recovered: the process stopped before phase 3)',
        { onlyFromStarted: true },
      ),
    );
    return (await deps.db.withTenant(tenantId, (client) => getPayment(client, paymentId)))!;
  }
  const resubmit = options.resubmit;
  const unsent = neverReachedProvider(payment);
  if (!outcome && resubmit && unsent && noRecordConclusive && age < resubmit.withinMs) {
    const submission = await deps.db.withTenant(tenantId, async (client) => {
      // Back to `started`: the send below is phase 2 again, and a crash during it is recovered as one.
      // The recovery point it had: a send that got no answer may already have been made. Never sent
      // again with a payment method an admin has removed since (as a schedule's run refuses one): it is
      // then held like a payment past its window (below). The method row is share-locked and the send's
      // token read in this transaction, so a removal lands either before (no send) or after the decision
      // to send, as for any payment's phase 1.
      const { rows } = await client.query<{ submit_attempts: number; was: string }>(
        `WITH before AS (SELECT id, recovery_point FROM payments WHERE id = $1 FOR UPDATE)
         UPDATE payments p SET submit_attempts = p.submit_attempts + 1, recovery_point = 'started', updated_at = now()
           FROM before
          WHERE p.id = before.id AND p.status = 'processing' AND p.submit_attempts < $2
            AND (p.recovery_point = 'started' OR (p.recovery_point = 'provider_called' AND p.provider_reference IS NULL))
            AND EXISTS (SELECT 1 FROM payment_methods m WHERE m.id = p.payment_method_id AND m.status = 'active'
                        FOR SHARE)
         RETURNING p.submit_attempts, before.recovery_point AS was`,
        [paymentId, resubmit.maxAttempts],
      );
      if (!rows[0]) return null;
      await appendAudit(client, {
        tenantId,
        actorType: 'system',
        actorId: 'reconciler',
        action: 'payment.resubmitted',
        subjectId: paymentId,
        details: { submission: rows[0].submit_attempts, note: 'the provider had no record of it' },
      });
      const [request] = await loadSubmissions(client, [paymentId]);
      return {
        request: request!,
        submission: rows[0].submit_attempts,
        mayAlreadyBeMade: rows[0].was !== 'started',
      };
    });
    if (submission !== null) {
      return executeSubmission(deps, tenantId, submission.request, {
        retryLaterMs:
          submission.submission < resubmit.maxAttempts && resubmit.retryLaterMs
            ? resubmit.retryLaterMs(submission.submission)
            : null,
        mayAlreadyBeMade: submission.mayAlreadyBeMade,
      });
    }
  }
  const notices: FailureNotice[] = [];
  const result = await deps.db.withTenant(tenantId, async (client) => {
    if (outcome && outcome.status !== 'processing') {
      const applied = await applyPaymentOutcome(client, paymentId, outcome, {
        actorType: 'system',
        actorId: 'reconciler',
      });
      if (applied.changed && applied.payment.status === 'failed')
        notices.push(
          await handleFailure(
            client,
            applied.payment,
            outcome.failure ?? { code: 'declined', message: 'declined' },
          ),
        );
      return applied.payment;
    }
    // A payment that may have reached the provider (its call got no answer, or the reconciler sent it
    // again) and that the provider has no record of, once the worker may not send it again (window,
    // attempts): the lookup can lag behind a charge (Stripe's search) or have forgotten it (PayPal after
    // 6 hours). Failing it would let its invoice be paid again; it stays processing and a human is told,
    // once. Only a payment whose first send never answered, looked at long after, is `not_submitted`.
    const notSubmittedAfterMs = options.notSubmittedAfterMs ?? 5 * 60_000;
    const doubtful = !outcome && unsent && (age > notSubmittedAfterMs || !noRecordConclusive);
    const mayHaveBeenMade =
      doubtful && (payment.recoveryPoint !== 'started' || (await wasResubmitted(client, paymentId)));
    // Within the window and its attempts the worker sends it again instead (above); a status refresh
    // only asks.
    if (doubtful && resubmit && (!noRecordConclusive || mayHaveBeenMade)) {
      const kind = HELD_ALERT_KIND;
      const alerted = await client.query('SELECT 1 FROM alerts WHERE payment_id = $1 AND kind = $2', [
        paymentId,
        kind,
      ]);
      if (!alerted.rowCount) {
        const why = noRecordConclusive
          ? `its calls got no answer and ${payment.provider} shows no record of it, which its lookup cannot yet prove; paygate sends a payment at most ${resubmit.maxAttempts} times and within ${resubmit.withinMs / 60_000} minutes`
          : `it was first asked about after ${payment.provider} stops finding payments by our id`;
        const message = `whether payment ${payment.confirmationNumber} (invoice ${payment.invoiceNumber}, ${formatMoney(payment.amountMinor, payment.currency)}) was made cannot be told from here: ${why}`;
        const alertId = await createAlert(client, {
          tenantId,
          kind,
          code: 'outcome_unverifiable',
          severity: 'critical',
          message,
          nextStep: `find our payment id ${paymentId} in the ${payment.provider} dashboard: if it was made, resend its webhook from there and paygate records it; if it was not, an admin records that with \`paygate payments resolve ${paymentId} --not-made\` and the invoice can be paid again (until then it stays blocked rather than be paid twice on a guess)`,
          paymentId,
        });
        notices.push({ tenantId, alertId, code: 'outcome_unverifiable', message, paymentId });
      }
    } else if (doubtful && noRecordConclusive && !mayHaveBeenMade) {
      const failure = {
        code: 'not_submitted' as const,
        message: 'the payment never reached the provider (the process stopped before the call)',
      };
      const { rowCount } = await client.query(
        `UPDATE payments SET status = 'failed', recovery_point = 'finished', failure_code = $2, failure_message = $3, next_check_at = NULL, updated_at = now()
          WHERE id = $1 AND status = 'processing' AND recovery_point = 'started' AND submit_attempts <= 1`,
        [paymentId, failure.code, failure.message],
      );
      // Moved on since it was read (a webhook, another process): nothing to fail.
      if (!rowCount) return (await getPayment(client, paymentId))!;
      await transitionInvoice(client, payment.invoiceId, 'processing', 'approved');
      await appendAudit(client, {
        tenantId,
        actorType: 'system',
        actorId: 'reconciler',
        action: 'payment.failed',
        subjectId: paymentId,
        details: { failure },
      });
      const rule = ruleFor('not_submitted');
      const alertId = await createAlert(client, {
        tenantId,
        kind: 'payment_not_submitted',
        code: failure.code,
        message: failure.message,
        nextStep: rule.nextStep,
        paymentId,
      });
      notices.push({ tenantId, alertId, code: failure.code, message: failure.message, paymentId });
      return (await getPayment(client, paymentId))!;
    }
    await client.query(
      `UPDATE payments SET attempts = attempts + 1, provider_reference = COALESCE(provider_reference, $4),
              next_check_at = ${NEXT_CHECK}, updated_at = now() WHERE id = $1`,
      [
        paymentId,
        nextCheckDelaySeconds(payment, now.getTime()),
        options.resubmit !== undefined,
        outcome?.providerReference ?? null,
      ],
    );
    return (await getPayment(client, paymentId))!;
  });
  for (const notice of notices) deps.onAlert?.(notice);
  return result;
}

/**
 * The next check after one that changed nothing ($2 seconds on, $3 whether the worker asked). A status
 * refresh (an agent's `refresh: true`) only brings it nearer: asking every few minutes must not keep
 * pushing back the worker's next send of a payment it deferred.
 */
const NEXT_CHECK =
  'CASE WHEN $3::boolean THEN now() + make_interval(secs => $2) ELSE LEAST(next_check_at, now() + make_interval(secs => $2)) END';

/** Whether the reconciler ever sent this payment again: phase 1 counts the first send, each resend one more. */
async function wasResubmitted(client: Queryable, paymentId: string): Promise<boolean> {
  const { rows } = await client.query<{ resent: boolean }>(
    'SELECT submit_attempts > 1 AS resent FROM payments WHERE id = $1',
    [paymentId],
  );
  return rows[0]?.resent ?? false;
}

/**
 * A processing payment the provider has never acknowledged: phase 1 committed and phase 2 never
 * answered, either because its process stopped first (`started`) or because the call got no answer at
 * all (a network_timeout: the provider down, the connection refused or reset), which phase 3 records at
 * `provider_called` with no reference. When the provider then has no record of it, asking again can never
 * resolve it: before this, such a payment stayed processing for good (its invoice blocked, its schedule
 * never paid). It is sent again under its own payment id, hence the same idempotency key (a request that
 * did arrive is replayed, not made twice), within the resubmit window; past it, reconcilePayment decides
 * (not_submitted only if it was never sent again and its one send never answered). A NACHA payment is
 * never one: its phase 2 only queues it, with a reference.
 */
function neverReachedProvider(
  payment: Pick<Payment, 'provider' | 'recoveryPoint' | 'providerReference'>,
): boolean {
  if (payment.recoveryPoint === 'started') return true;
  return (
    payment.provider !== 'nacha' &&
    payment.recoveryPoint === 'provider_called' &&
    payment.providerReference === null
  );
}

/** Widening schedule for asking about a payment: minutes at first, then an hour, then daily. */
export function nextCheckDelaySeconds(payment: Pick<Payment, 'createdAt'>, now = Date.now()): number {
  const ageS = (now - payment.createdAt.getTime()) / 1000;
  if (ageS < 30 * 60) return 5 * 60;
  if (ageS < 24 * 3600) return 3600;
  return 24 * 3600;
}
