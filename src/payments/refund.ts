/**
 * refund_payment: through the original provider, full or partial, never more in total than was
 * captured. Same shape as a payment: approval bound to payment, amount and reason; phase 1 consumes
 * the token and inserts a `pending` refund under the payment's row lock (so two refunds cannot both fit
 * in the same remainder); phase 2 calls the provider with a key derived from the refund id; phase 3
 * records the outcome.
 */
import { randomUUID } from 'node:crypto';
import { consumeApprovalToken, requestApproval } from '../approvals/approvals.js';
import type { RefundParams } from '../approvals/canonical.js';
import { requiredApprovals } from '../approvals/policy.js';
import { appendAudit } from '../audit/log.js';
import type { Queryable } from '../db/pool.js';
import { RefusedError, UsageError } from '../errors.js';
import { NACHA_REFUND_REFUSAL } from '../gateways/nacha/gateway.js';
import { GatewayError, type RefundOutcome } from '../gateways/types.js';
import { formatAmount, formatMoney, MoneyError, parseAmount } from '../money.js';
import { admitMoneyMovingCall, recordRun } from './agent-runs.js';
import { createAlert, ruleFor } from './alerts.js';
import type { Caller, EngineDeps, FailureNotice } from './context.js';
import { crashPoint } from './crash-points.js';
import { interrupted, linkIdempotencyKey } from './idempotency.js';
import {
  type ApprovalRequired,
  approvalRequiredAnswer,
  auditIfTokenRefused,
  checkProviderTakes,
  evidenceOf,
  PaymentFailedError,
  requestDigest,
  type ServerEvidence,
  withIdempotency,
} from './pay.js';
import { findPayment, getPayment, lockPayment, type Payment, paymentJson } from './payments.js';
import { applyRefundReport } from './refund-outcome.js';

export interface RefundInput {
  payment: string;
  amount?: string;
  reason?: string;
  approval_token?: string;
  idempotency_key?: string;
}

export type RefundStatus = 'pending' | 'succeeded' | 'failed';

export interface RefundView {
  refund_id: string;
  amount: string;
  amount_minor: number;
  currency: string;
  status: RefundStatus;
  reason: string | null;
  gateway_reference: string | null;
  approved_by: string[];
  created_at: string;
  refunded_at: string | null;
}

export async function refundsOf(client: Queryable, paymentId: string): Promise<RefundView[]> {
  const { rows } = await client.query<{
    id: string;
    amount_minor: number;
    currency: string;
    status: RefundStatus;
    reason: string | null;
    provider_reference: string | null;
    approved_by: string[];
    created_at: Date;
    refunded_at: Date | null;
  }>(
    `SELECT id, amount_minor, currency, status, reason, provider_reference, approved_by, created_at, refunded_at
     FROM refunds WHERE payment_id = $1 ORDER BY created_at`,
    [paymentId],
  );
  return rows.map((r) => ({
    refund_id: r.id,
    amount: formatAmount(r.amount_minor, r.currency.trim()),
    amount_minor: r.amount_minor,
    currency: r.currency.trim(),
    status: r.status,
    reason: r.reason,
    gateway_reference: r.provider_reference,
    approved_by: r.approved_by,
    created_at: r.created_at.toISOString(),
    refunded_at: r.refunded_at?.toISOString() ?? null,
  }));
}

function remainingOf(payment: Payment): number {
  return payment.amountMinor - payment.refundedMinor - payment.pendingRefundMinor;
}

function checkRefundable(payment: Payment, amountMinor: number): void {
  // Refused before anything else, so no approver is asked for what cannot happen: a NACHA payment is a
  // credit pushed to the vendor's bank in a file, and no file of ours can pull it back.
  if (payment.provider === 'nacha') {
    throw new RefusedError(
      'refund_not_supported',
      `payment ${payment.confirmationNumber} (invoice ${payment.invoiceNumber}) was paid by bank ACH in a NACHA file; ${NACHA_REFUND_REFUSAL}`,
      'ask the vendor to return the funds, or have your bank originate an ACH reversal; no approval was requested',
    );
  }
  if (payment.status !== 'succeeded') {
    throw new RefusedError(
      'payment_not_refundable',
      `payment ${payment.id} is ${payment.status}; only a completed payment can be refunded`,
      'call get_payment_status',
    );
  }
  const remaining = remainingOf(payment);
  if (remaining <= 0)
    throw new RefusedError('payment_fully_refunded', `payment ${payment.id} has nothing left to refund`);
  if (amountMinor > remaining) {
    throw new RefusedError(
      'refund_exceeds_captured',
      `a refund of ${formatMoney(amountMinor, payment.currency)} is more than the ${formatMoney(remaining, payment.currency)} left of payment ${payment.id}`,
      `refund at most ${formatAmount(remaining, payment.currency)} ${payment.currency}`,
    );
  }
}

export async function refundPayment(
  deps: EngineDeps,
  caller: Caller,
  input: RefundInput,
  server?: ServerEvidence,
): Promise<ApprovalRequired | Record<string, unknown>> {
  return recordRun(deps, caller, 'refund_payment', async (run) => {
    if (typeof input.payment !== 'string' || !input.payment)
      throw new UsageError('payment must be a payment id or the provider reference');
    if (input.reason !== undefined && (typeof input.reason !== 'string' || input.reason.length > 500)) {
      throw new UsageError('reason must be text of at most 500 characters');
    }
    const attempt = async () => {
      const tenant = await admitMoneyMovingCall(deps.db, caller, run);
      const payment = await deps.db.withTenant(tenant.id, (client) => findPayment(client, input.payment));
      if (!payment)
        throw new RefusedError(
          'payment_not_found',
          `no payment "${input.payment}" in this tenant`,
          'use the payment_id from the confirmation',
        );
      let amountMinor: number;
      try {
        amountMinor =
          input.amount === undefined ? remainingOf(payment) : parseAmount(input.amount, payment.currency);
      } catch (error) {
        if (error instanceof MoneyError) throw new UsageError(error.message, 'invalid_amount');
        throw error;
      }
      checkRefundable(payment, amountMinor);
      checkProviderTakes(
        deps,
        payment.provider,
        { amountMinor, currency: payment.currency, rail: payment.rail },
        'refund',
      );
      const params: RefundParams = {
        payment_id: payment.id,
        amount_minor: amountMinor,
        currency: payment.currency,
        reason: input.reason ?? null,
      };
      const evidence = evidenceOf(input.approval_token, server);
      if (!evidence) {
        const summary = `Refund ${formatMoney(amountMinor, payment.currency)} of payment ${payment.confirmationNumber} (invoice ${payment.invoiceNumber}, ${payment.vendorName}, by ${payment.rail})${input.reason ? `: ${input.reason}` : ''}`;
        const { approval } = await deps.db.withTenant(tenant.id, (client) =>
          requestApproval(client, {
            tenantId: tenant.id,
            agentKeyId: caller.agentKey.id,
            action: 'refund_payment',
            params,
            amountMinor,
            currency: payment.currency,
            summary,
            // Dual control looks at everything refunded from this payment, so it cannot be split away.
            requiredApprovals: requiredApprovals(
              tenant,
              payment.refundedMinor + payment.pendingRefundMinor + amountMinor,
              payment.currency,
            ),
          }),
        );
        return approvalRequiredAnswer(deps, approval);
      }
      const refundId = randomUUID();
      try {
        await deps.db.withTenant(tenant.id, async (client) => {
          const consumed = await consumeApprovalToken(client, {
            tenantId: tenant.id,
            agentKey: caller.agentKey,
            action: 'refund_payment',
            params,
            ...evidence,
          });
          // The lock first, then the read, so the totals include a refund that committed while this
          // waited (getPayment's own lock would sum them as of before the wait).
          await lockPayment(client, payment.id);
          const locked = (await getPayment(client, payment.id))!;
          checkRefundable(locked, amountMinor);
          // Dual control again, under the payment's lock, over what is refunded by now: two requests asked
          // while nothing was refunded each looked small enough for one approver.
          const total = locked.refundedMinor + locked.pendingRefundMinor + amountMinor;
          if (consumed.approvedBy.length < requiredApprovals(tenant, total, payment.currency)) {
            throw new RefusedError(
              'dual_approval_required',
              `refunds of payment ${payment.confirmationNumber} would total ${formatMoney(total, payment.currency)}, which needs two approvers; this one was approved by ${consumed.approvedBy.join(', ')} alone`,
              'call refund_payment again without approval_token to ask for an approval of two humans',
            );
          }
          await client.query(
            `INSERT INTO refunds (id, tenant_id, payment_id, approval_id, agent_key_id, amount_minor, currency, reason, approved_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
            [
              refundId,
              tenant.id,
              payment.id,
              consumed.id,
              caller.agentKey.id,
              amountMinor,
              payment.currency,
              input.reason ?? null,
              consumed.approvedBy,
            ],
          );
          // With the refund, in its transaction (the token is consumed from here on): a retry with the
          // key, after this call failed or died, answers with this refund instead of starting another.
          if (input.idempotency_key !== undefined)
            await linkIdempotencyKey(
              client,
              { tenantId: tenant.id, agentKeyId: caller.agentKey.id, key: input.idempotency_key },
              { refundId },
            );
          await appendAudit(client, {
            tenantId: tenant.id,
            actorType: 'agent',
            actorId: caller.agentKey.id,
            action: 'refund.started',
            subjectId: refundId,
            details: {
              payment_id: payment.id,
              amount_minor: amountMinor,
              currency: payment.currency,
              reason: input.reason ?? null,
              approved_by: consumed.approvedBy,
            },
          });
        });
      } catch (error) {
        await auditIfTokenRefused(deps, caller, 'refund_payment', error, payment.id);
        throw error;
      }
      const outcome = await executeRefund(deps, tenant.id, refundId);
      const after = (await deps.db.withTenant(tenant.id, (client) => getPayment(client, payment.id)))!;
      return refundAnswer(after, {
        id: refundId,
        status: outcome.status,
        amountMinor,
        failure: outcome.failure ?? null,
      });
    };
    return withIdempotency(
      deps,
      caller,
      'refund_payment',
      input.idempotency_key,
      requestDigest('refund_payment', input),
      attempt,
      async ({ since, refundId }) => {
        if (!refundId) return undefined;
        const made = await deps.db.withTenant(caller.agentKey.tenantId, async (client) => {
          const { rows } = await client.query<{
            payment_id: string;
            status: RefundStatus;
            amount_minor: number;
            failure_code: string | null;
            failure_message: string | null;
          }>(
            'SELECT payment_id, status, amount_minor, failure_code, failure_message FROM refunds WHERE id = $1',
            [refundId],
          );
          const row = rows[0];
          return row ? { row, payment: (await getPayment(client, row.payment_id))! } : null;
        });
        // Still pending and recent: the first call may be in its provider call; its answer is to come.
        if (!made || (made.row.status === 'pending' && !interrupted(since))) return undefined;
        const { row, payment } = made;
        return refundAnswer(payment, {
          id: refundId,
          status: row.status,
          amountMinor: row.amount_minor,
          failure: row.failure_code ? { code: row.failure_code, message: row.failure_message ?? '' } : null,
        });
      },
    );
  });
}

/**
 * A refund call's answer once its refund exists: the payment with the refund's id, status and amount;
 * a failed refund is an isError answer naming both, which withIdempotency keeps as the key's final one.
 */
function refundAnswer(
  payment: Payment,
  refund: {
    id: string;
    status: RefundStatus;
    amountMinor: number;
    failure: { code: string; message: string } | null;
  },
): Record<string, unknown> {
  const json = {
    ...paymentJson(payment),
    refund_id: refund.id,
    refund_status: refund.status,
    refund_amount: formatAmount(refund.amountMinor, payment.currency),
  };
  if (refund.status === 'failed') {
    throw new PaymentFailedError(
      refund.failure?.code ?? 'refund_failed',
      `the refund failed: ${refund.failure?.message || 'no reason given'}`,
      'a human has been alerted; call get_payment_status for the refund. Nothing was refunded by it: another try needs a new approval (refund_payment without approval_token) and a new idempotency_key',
      false,
      json,
    );
  }
  return { success: true, ...json };
}

/** Phases 2 and 3 of a refund (also the worker's way to re-drive a pending one: same refund id, same key). */
export async function executeRefund(
  deps: EngineDeps,
  tenantId: string,
  refundId: string,
): Promise<RefundOutcome> {
  const { refund, payment } = await deps.db.withTenant(tenantId, async (client) => {
    const { rows } = await client.query<{
      payment_id: string;
      amount_minor: number;
      currency: string;
      reason: string | null;
      status: RefundStatus;
    }>('SELECT payment_id, amount_minor, currency, reason, status FROM refunds WHERE id = $1', [refundId]);
    return { refund: rows[0]!, payment: (await getPayment(client, rows[0]!.payment_id))! };
  });
  let outcome: RefundOutcome;
  try {
    const gateway = deps.gateway(payment.provider);
    if (!gateway)
      throw new GatewayError(
        'configuration_error',
        `the ${payment.provider} provider is not configured`,
        payment.provider,
      );
    outcome = await gateway.refund({
      refundId,
      paymentId: payment.id,
      tenantId,
      paymentProviderReference: payment.providerReference ?? '',
      amountMinor: refund.amount_minor,
      currency: refund.currency.trim(),
      reason: refund.reason ?? undefined,
    });
  } catch (error) {
    if (!(error instanceof GatewayError)) throw error;
    outcome =
      error.code === 'network_timeout' || error.retryable
        ? { status: 'pending', providerReference: '', failure: { code: error.code, message: error.message } }
        : {
            status: 'failed',
            providerReference: '',
            failure: { code: error.code, message: error.message, providerCode: error.details.providerCode },
          };
  }
  crashPoint('after_refund_call');
  const notices: FailureNotice[] = [];
  await deps.db.withTenant(tenantId, async (client) => {
    const updated = await client.query(
      `UPDATE refunds SET status = $2, provider_reference = COALESCE(NULLIF($3, ''), provider_reference), failure_code = $4, failure_message = $5,
              recovery_point = 'finished', refunded_at = CASE WHEN $2 = 'succeeded' THEN now() END, updated_at = now()
       WHERE id = $1 AND status = 'pending'`,
      [
        refundId,
        outcome.status,
        outcome.providerReference,
        outcome.failure?.code ?? null,
        outcome.failure?.message ?? null,
      ],
    );
    if (!updated.rowCount) return;
    await appendAudit(client, {
      tenantId,
      actorType: 'provider',
      actorId: payment.provider,
      action: `refund.${outcome.status}`,
      subjectId: refundId,
      details: {
        payment_id: payment.id,
        amount_minor: refund.amount_minor,
        currency: refund.currency.trim(),
        provider_reference: outcome.providerReference || null,
        failure: outcome.failure ?? null,
      },
    });
    if (outcome.status === 'failed' && outcome.failure) {
      const message = `Refund of ${formatMoney(refund.amount_minor, refund.currency.trim())} on invoice ${payment.invoiceNumber} failed: ${outcome.failure.message}`;
      const alertId = await createAlert(client, {
        tenantId,
        kind: 'refund_failed',
        code: outcome.failure.code,
        message,
        nextStep: ruleFor(outcome.failure.code).nextStep,
        paymentId: payment.id,
        refundId,
      });
      notices.push({
        tenantId,
        alertId,
        code: outcome.failure.code,
        message,
        paymentId: payment.id,
        refundId,
      });
    }
  });
  for (const n of notices) deps.onAlert?.(n);
  return outcome;
}

/** Alert kind raised when a refund is still pending at the end of the worker's re-drive window. */
export const REFUND_PENDING_TOO_LONG = 'refund_pending_too_long';

export interface PendingRefundCheck {
  /** Asked the provider (`looked_up`), sent the create again (`redriven`), or neither (`none`). */
  action: 'looked_up' | 'redriven' | 'none';
  /** The refund's status afterwards. */
  status: RefundStatus;
  /** A human was alerted: still pending past the re-drive window. */
  alerted: boolean;
}

export interface PendingRefundOptions {
  /** The worker's clock (tests move it); default the real one. */
  now?: Date;
  /**
   * The worker's window. A pending refund with no provider reference (the create's answer was lost) is
   * sent again, same refund id and so the same key, only while younger than this; one still pending
   * when it is older raises an alert for a human, once. Absent (a status refresh): only look up.
   */
  redriveWindowMs?: number;
}

/**
 * Resolve a pending refund. With a provider reference the provider has answered before, so it is asked
 * (gateway.retrieveRefund), never sent again: a create with the same key would only replay its first
 * answer ("pending") however the refund has since ended. A final answer is recorded by
 * applyRefundReport, the webhook's own path. Without a reference the create is re-sent (executeRefund)
 * within the window. Never throws for a provider failure: the refund stays pending and is asked later.
 */
export async function checkPendingRefund(
  deps: EngineDeps,
  tenantId: string,
  refundId: string,
  options: PendingRefundOptions = {},
): Promise<PendingRefundCheck> {
  const now = options.now ?? new Date();
  const loaded = await deps.db.withTenant(tenantId, async (client) => {
    const { rows } = await client.query<{
      payment_id: string;
      status: RefundStatus;
      amount_minor: number;
      provider_reference: string | null;
      created_at: Date;
    }>('SELECT payment_id, status, amount_minor, provider_reference, created_at FROM refunds WHERE id = $1', [
      refundId,
    ]);
    const row = rows[0];
    return row ? { row, payment: (await getPayment(client, row.payment_id))! } : null;
  });
  if (!loaded) throw new Error(`refund ${refundId} not found in tenant ${tenantId}`);
  const { row, payment } = loaded;
  if (row.status !== 'pending') return { action: 'none', status: row.status, alerted: false };
  const window = options.redriveWindowMs;
  const inWindow = window !== undefined && now.getTime() - row.created_at.getTime() < window;
  let action: PendingRefundCheck['action'] = 'none';
  let status: RefundStatus = 'pending';
  if (row.provider_reference) {
    action = 'looked_up';
    status = await lookUpRefund(deps, payment, {
      id: refundId,
      amountMinor: row.amount_minor,
      providerReference: row.provider_reference,
    });
  } else if (inWindow) {
    action = 'redriven';
    status = (await executeRefund(deps, tenantId, refundId)).status;
  }
  if (status !== 'pending' || window === undefined || inWindow) return { action, status, alerted: false };
  return { action, status, alerted: await alertStillPending(deps, payment, refundId, now) };
}

/** get_payment_status with refresh: ask the provider about each of the payment's pending refunds. */
export async function refreshPendingRefunds(deps: EngineDeps, tenantId: string, paymentId: string) {
  const { rows } = await deps.db.withTenant(tenantId, (client) =>
    client.query<{ id: string }>(
      `SELECT id FROM refunds WHERE payment_id = $1 AND status = 'pending' AND provider_reference IS NOT NULL
       ORDER BY created_at`,
      [paymentId],
    ),
  );
  for (const r of rows) await checkPendingRefund(deps, tenantId, r.id);
}

async function lookUpRefund(
  deps: EngineDeps,
  payment: Payment,
  refund: { id: string; amountMinor: number; providerReference: string },
): Promise<RefundStatus> {
  const { id: refundId, providerReference } = refund;
  const gateway = deps.gateway(payment.provider);
  if (!gateway) return 'pending';
  let outcome: RefundOutcome | null;
  try {
    outcome = await gateway.retrieveRefund({ refundId, providerReference });
  } catch (error) {
    if (!(error instanceof GatewayError)) throw error;
    deps.logger?.warn(
      { err: error, refundId, provider: payment.provider },
      'refund lookup failed; it stays pending and is asked again later',
    );
    return 'pending';
  }
  // Null: the provider does not know the reference it gave us. Nothing to apply; if it never resolves,
  // the worker's alert at the end of the window tells a human.
  if (!outcome || outcome.status === 'pending') return 'pending';
  const notices: FailureNotice[] = [];
  const result = await deps.db.withTenant(payment.tenantId, (client) =>
    applyRefundReport(
      client,
      payment,
      {
        status: outcome.status as 'succeeded' | 'failed',
        providerReference: outcome.providerReference || providerReference,
        refundId,
        // Both providers' refund objects carry the amount; were one not to, there is nothing to compare.
        amountMinor: outcome.amountMinor ?? refund.amountMinor,
        currency: outcome.currency ?? payment.currency,
        ...(outcome.failure ? { failure: outcome.failure } : {}),
      },
      {
        actorType: 'system',
        actorId: 'reconciler',
        note: `refund looked up at ${payment.provider}`,
      },
      notices,
    ),
  );
  for (const n of notices) deps.onAlert?.(n);
  return result.outcome === 'no_such_refund' ? 'pending' : result.status;
}

/** Once per refund: the worker stops re-sending and looking up; a human takes it from here. */
async function alertStillPending(
  deps: EngineDeps,
  payment: Payment,
  refundId: string,
  now: Date,
): Promise<boolean> {
  const notices: FailureNotice[] = [];
  await deps.db.withTenant(payment.tenantId, async (client) => {
    const { rows } = await client.query<{
      amount_minor: number;
      currency: string;
      provider_reference: string | null;
      created_at: Date;
    }>(
      `SELECT amount_minor, currency, provider_reference, created_at FROM refunds
       WHERE id = $1 AND status = 'pending' FOR UPDATE`,
      [refundId],
    );
    const row = rows[0];
    if (!row) return;
    const already = await client.query(`SELECT 1 FROM alerts WHERE refund_id = $1 AND kind = $2`, [
      refundId,
      REFUND_PENDING_TOO_LONG,
    ]);
    if (already.rows.length > 0) return;
    const hours = Math.floor((now.getTime() - row.created_at.getTime()) / 3_600_000);
    const currency = row.currency.trim();
    const message = `Refund of ${formatMoney(row.amount_minor, currency)} on invoice ${payment.invoiceNumber} (payment ${payment.confirmationNumber}) is still pending at ${payment.provider} after ${hours} hours; paygate has stopped asking.`;
    const alertId = await createAlert(client, {
      tenantId: payment.tenantId,
      kind: REFUND_PENDING_TOO_LONG,
      code: REFUND_PENDING_TOO_LONG,
      message,
      nextStep: row.provider_reference
        ? `check refund ${row.provider_reference} in the ${payment.provider} dashboard; get_payment_status with refresh: true asks again. While it is pending its amount cannot be refunded again`
        : `the refund may never have reached ${payment.provider}: check its dashboard for a refund of this payment before anything else; while it is pending its amount cannot be refunded again`,
      paymentId: payment.id,
      refundId,
    });
    notices.push({
      tenantId: payment.tenantId,
      alertId,
      code: REFUND_PENDING_TOO_LONG,
      message,
      paymentId: payment.id,
      refundId,
    });
  });
  for (const n of notices) deps.onAlert?.(n);
  return notices.length > 0;
}
