/**
 * pay_invoice and schedule_payment: validation, the business rules, the approval protocol, and phase 1.
 * Without a token the answer is `approval_required`; with one, the token is consumed in the same
 * transaction that creates the payment (or the schedule), so one token can start at most one.
 */
import { createHash, randomUUID } from 'node:crypto';
import {
  type Approval,
  type ApprovalEvidence,
  type ConsumedApproval,
  consumeApprovalToken,
  requestApproval,
} from '../approvals/approvals.js';
import {
  type ApprovalAction,
  canonicalJson,
  type PayParams,
  type ScheduleParams,
} from '../approvals/canonical.js';
import { requiredApprovals } from '../approvals/policy.js';
import { appendAudit } from '../audit/log.js';
import { advisoryLockKey, PgError, pgErrorCode, type Queryable } from '../db/pool.js';
import { activeMethodForRail, checkRail, type PaymentMethod } from '../directory/payment-methods.js';
import type { Tenant } from '../directory/tenants.js';
import { RefusedError, UsageError } from '../errors.js';
import type { Provider, Rail } from '../gateways/types.js';
import { formatAmount, formatMoney, MoneyError, parseMoney } from '../money.js';
import { admitMoneyMovingCall, type Run, recordRun } from './agent-runs.js';
import { addDays, nextBusinessDay, previousBusinessDay, todayIn, whyNotBusinessDay } from './calendar.js';
import type { Caller, EngineDeps } from './context.js';
import { crashPoint } from './crash-points.js';
import {
  claimIdempotencyKey,
  completeIdempotencyKey,
  inProgressError,
  interrupted,
  linkIdempotencyKey,
  releaseIdempotencyKey,
} from './idempotency.js';
import { checkDate, findInvoice, type Invoice, transitionInvoice } from './invoices.js';
import { getPayment, type Payment, paymentJson } from './payments.js';
import { executeSubmission, insertSubmission, type Submission } from './phases.js';

/** How far ahead a payment may be scheduled. */
export const MAX_SCHEDULE_AHEAD_DAYS = 366;

export interface PayInput {
  invoice: string;
  amount: string;
  currency: string;
  method: string;
  approval_token?: string;
  idempotency_key?: string;
  approver?: string;
}

export interface ScheduleInput extends PayInput {
  scheduled_date: string;
}

/**
 * Evidence of approval that only the server can present, never a tool argument: the MCP server watched
 * the human approve this very request through a URL elicitation, so it completes the call with the
 * approval's id and the agent never holds a token. consumeApprovalToken checks every binding either way.
 */
export interface ServerEvidence {
  approvalId: string;
}

/** The evidence a call carries: the human's token from the input, or the server's, or none (ask). */
export function evidenceOf(
  token: string | undefined,
  server: ServerEvidence | undefined,
): ApprovalEvidence | undefined {
  if (server) return { approvalId: server.approvalId };
  return token ? { token } : undefined;
}

export interface ApprovalRequired {
  status: 'approval_required';
  approval_id: string;
  approve_url: string;
  expires_at: string;
  summary: string;
  required_approvals: number;
  approved_by: string[];
}

export type PaymentConfirmation = ReturnType<typeof paymentJson> & {
  success: true;
  scheduled_date?: string | null;
  scheduled_payment_id?: string | null;
};

/**
 * A payment or refund that was attempted and failed: an isError answer that still names the payment
 * (and, for a refund, the refund). Its call got past phase 1, so this is the final answer for its key.
 */
export class PaymentFailedError extends RefusedError {
  constructor(
    code: string,
    message: string,
    nextStep: string,
    retryable: boolean,
    readonly payment: ReturnType<typeof paymentJson>,
  ) {
    super(code, message, nextStep, retryable);
  }
}

export function approvalRequiredAnswer(
  deps: Pick<EngineDeps, 'publicUrl'>,
  approval: Approval,
): ApprovalRequired {
  return {
    status: 'approval_required',
    approval_id: approval.id,
    approve_url: `${deps.publicUrl.replace(/\/$/, '')}/approvals/${approval.id}`,
    expires_at: approval.expiresAt.toISOString(),
    summary: approval.summary,
    required_approvals: approval.requiredApprovals,
    approved_by: approval.approvedBy,
  };
}

function parseInputMoney(amount: unknown, currency: unknown) {
  if (typeof amount !== 'string')
    throw new UsageError('amount must be a decimal string such as "500.00"', 'invalid_amount');
  if (typeof currency !== 'string')
    throw new UsageError('currency must be an ISO 4217 code such as "USD"', 'invalid_currency');
  try {
    return parseMoney(amount, currency);
  } catch (error) {
    if (error instanceof MoneyError)
      throw new UsageError(
        error.message,
        'invalid_amount',
        'send the invoice amount exactly, as a decimal string',
      );
    throw error;
  }
}

interface Plan {
  tenant: Tenant;
  invoice: Invoice;
  method: PaymentMethod & { token: string };
  rail: Rail;
  amountMinor: number;
  currency: string;
}

/** The business rules of DESIGN.md's pay flow, step 1. Read-only; phase 1 re-checks under a lock. */
async function plan(
  client: Queryable,
  tenant: Tenant,
  caller: Caller,
  input: PayInput,
  options: { allowScheduled?: boolean; day?: string } = {},
): Promise<Plan> {
  const money = parseInputMoney(input.amount, input.currency);
  const rail = checkRail(String(input.method));
  if (typeof input.invoice !== 'string' || !input.invoice)
    throw new UsageError('invoice must be an invoice number such as INV-2025-001');
  const invoice = await findInvoice(client, input.invoice);
  if (!invoice) {
    throw new RefusedError(
      'invoice_not_found',
      `no invoice "${input.invoice}" in this tenant`,
      'call list_invoices to see the invoices you can pay',
    );
  }
  checkPayable(invoice, money, options);
  const method = await activeMethodForRail(client, rail);
  if (!method) {
    throw new RefusedError(
      'rail_not_configured',
      `no ${rail} payment method is configured for this tenant`,
      'call list_payment_methods, or ask an admin to add one',
    );
  }
  await checkCaps(client, tenant, caller, money.amountMinor, money.currency, options.day);
  return { tenant, invoice, method, rail, amountMinor: money.amountMinor, currency: money.currency };
}

/**
 * What the provider itself cannot move (a currency it does not take, an amount step it refuses), refused
 * before a human is asked to approve a payment or refund that would only fail at the provider.
 */
export function checkProviderTakes(
  deps: Pick<EngineDeps, 'gateway'>,
  provider: Provider,
  amount: { amountMinor: number; currency: string; rail: Rail },
  what: 'payment' | 'refund',
): void {
  const problem = deps.gateway(provider)?.amountProblem(amount);
  if (!problem) return;
  throw new RefusedError(
    'amount_not_supported',
    `a ${what} of ${formatMoney(amount.amountMinor, amount.currency)} by ${amount.rail} cannot be made: ${problem}`,
    what === 'payment'
      ? 'pay it by another method (list_payment_methods), or a human pays it outside paygate; nothing was asked of an approver'
      : 'refund an amount the provider takes, or a human refunds it at the provider; nothing was asked of an approver',
  );
}

function checkPayable(
  invoice: Invoice,
  money: { amountMinor: number; currency: string },
  options: { allowScheduled?: boolean } = {},
): void {
  switch (invoice.status) {
    case 'approved':
      break;
    case 'paid':
      throw new RefusedError(
        'invoice_already_paid',
        `invoice ${invoice.number} is already paid`,
        'nothing to do; call get_payment_status for the confirmation',
      );
    case 'processing':
      throw new RefusedError(
        'invoice_payment_in_progress',
        `a payment of invoice ${invoice.number} is already in progress`,
        'call get_payment_status to follow it',
      );
    case 'scheduled':
      if (!options.allowScheduled) {
        throw new RefusedError(
          'invoice_scheduled',
          `invoice ${invoice.number} is already scheduled`,
          'cancel_scheduled_payment first to pay it now',
        );
      }
      break;
    case 'draft':
      throw new RefusedError(
        'invoice_not_approved',
        `invoice ${invoice.number} is a draft, not approved for payment`,
        'a human must approve the invoice itself first',
      );
    case 'void':
      throw new RefusedError('invoice_void', `invoice ${invoice.number} is void`, 'do not pay it');
    default: {
      const unreachable: never = invoice.status;
      throw new Error(`unknown invoice status ${String(unreachable)}`);
    }
  }
  if (money.currency !== invoice.currency) {
    throw new RefusedError(
      'currency_mismatch',
      `invoice ${invoice.number} is in ${invoice.currency}, not ${money.currency}`,
      `pay it in ${invoice.currency}`,
    );
  }
  if (money.amountMinor !== invoice.amountMinor) {
    throw new RefusedError(
      'amount_mismatch',
      `the amount ${formatMoney(money.amountMinor, money.currency)} does not match invoice ${invoice.number}'s ${formatMoney(invoice.amountMinor, invoice.currency)}`,
      `pay exactly ${formatAmount(invoice.amountMinor, invoice.currency)} ${invoice.currency}`,
    );
  }
}

/** How long a call waits for its key's daily-cap lock before it gives up (retryable). */
const DAILY_CAP_LOCK_TIMEOUT = '5s';

/** The agent key's caps: per payment, and per day (in the tenant's time zone) across its live payments. */
async function checkCaps(
  client: Queryable,
  tenant: Tenant,
  caller: Caller,
  amountMinor: number,
  currency: string,
  day?: string,
): Promise<void> {
  const key = caller.agentKey;
  if (key.capsCurrency === null) return;
  if (key.capsCurrency !== currency) {
    throw new RefusedError(
      'agent_cap_currency',
      `this agent key's caps are in ${key.capsCurrency}; it cannot pay in ${currency}`,
      'ask an admin for a key with caps in this currency',
    );
  }
  if (key.maxPerPaymentMinor !== null && amountMinor > key.maxPerPaymentMinor) {
    throw new RefusedError(
      'agent_cap_exceeded',
      `${formatMoney(amountMinor, currency)} is over this agent key's cap of ${formatMoney(key.maxPerPaymentMinor, currency)} per payment`,
      'a human must pay this one another way, or an admin must raise the cap',
    );
  }
  if (key.maxPerDayMinor !== null) {
    // The key's money-moving calls take turns from here to their commit (this runs in the transaction
    // that writes the payment or schedule): two approved calls started together would otherwise each
    // sum the day without the other and both pass. The sum below is a new statement, so it sees what the
    // previous holder committed.
    // A holder that stalls (its process paused before its commit) must not make the key's other calls
    // wait for ever, each holding a pooled connection until the pool, and every tenant with it, is
    // stuck: the wait is bounded like the admission's, then the previous lock_timeout is put back, in
    // the same round trip, for the rest of the transaction.
    try {
      await client.query(
        `SELECT pg_advisory_xact_lock($1), set_config('lock_timeout', t.before, true)
           FROM (SELECT current_setting('lock_timeout') AS before, set_config('lock_timeout', $2, true)) AS t`,
        [advisoryLockKey(`daily-cap:${key.id}`), DAILY_CAP_LOCK_TIMEOUT],
      );
    } catch (error) {
      if (pgErrorCode(error) !== PgError.lockNotAvailable) throw error;
      throw new RefusedError(
        'rate_limited',
        `another money-moving call of this agent key has held its daily cap for over ${DAILY_CAP_LOCK_TIMEOUT}`,
        'wait a few seconds and call again; nothing was consumed',
        true,
      );
    }
    // The day's payments plus the schedules still waiting for that day: a cap cannot be dodged by
    // scheduling several payments for today. For today, also the schedules overdue from earlier days (the
    // worker was stopped, or a retry waits): they run today, so they count toward today.
    const { rows } = await client.query<{ total: number }>(
      `WITH d AS (SELECT COALESCE($4::date, (now() AT TIME ZONE $3)::date) AS day,
                         (now() AT TIME ZONE $3)::date AS today)
       SELECT ((SELECT COALESCE(sum(amount_minor), 0) FROM payments, d
                WHERE agent_key_id = $1 AND status IN ('processing', 'succeeded') AND currency = $2
                  AND (created_at AT TIME ZONE $3)::date = d.day)
            + (SELECT COALESCE(sum(amount_minor), 0) FROM scheduled_payments, d
                WHERE agent_key_id = $1 AND status = 'scheduled' AND currency = $2
                  AND (scheduled_date = d.day OR (d.day = d.today AND scheduled_date < d.today))))::bigint AS total`,
      [key.id, currency, tenant.timezone, day ?? null],
    );
    const today = rows[0]!.total;
    if (today + amountMinor > key.maxPerDayMinor) {
      throw new RefusedError(
        'agent_daily_cap_exceeded',
        `paying ${formatMoney(amountMinor, currency)} would bring this agent key to ${formatMoney(today + amountMinor, currency)} today, over its cap of ${formatMoney(key.maxPerDayMinor, currency)}`,
        'wait until tomorrow or ask an admin to raise the daily cap',
      );
    }
  }
}

function summaryOf(action: ApprovalAction, p: Plan, agentName: string, date?: string): string {
  const what = `${formatMoney(p.amountMinor, p.currency)} to ${p.invoice.vendorName} for invoice ${p.invoice.number}`;
  const how = `by ${p.rail}${p.method.label ? ` (${p.method.label}${p.method.last4 ? ` ····${p.method.last4}` : ''})` : p.method.last4 ? ` (····${p.method.last4})` : ''}`;
  const when = action === 'schedule_payment' ? ` on ${date}` : ' now';
  return `${action === 'schedule_payment' ? 'Schedule payment of' : 'Pay'} ${what} ${how}${when}, requested by agent "${agentName}"`;
}

/** What a human approves for paying (or scheduling) a planned payment; the approval token binds it. */
function payParams(p: Plan): PayParams {
  return {
    invoice_id: p.invoice.id,
    amount_minor: p.amountMinor,
    currency: p.currency,
    method: p.rail,
    payment_method_id: p.method.id,
  };
}

/** Create (or find the identical) pending request, in the caller's transaction; answer `approval_required`. */
async function askForApproval(
  client: Queryable,
  deps: EngineDeps,
  caller: Caller,
  tenant: Tenant,
  action: 'pay_invoice' | 'schedule_payment',
  params: PayParams | ScheduleParams,
  p: Plan,
  approver: string | undefined,
): Promise<ApprovalRequired> {
  const date = 'scheduled_date' in params ? params.scheduled_date : undefined;
  const summary = summaryOf(action, p, caller.agentKey.name, date);
  const { approval } = await requestApproval(client, {
    tenantId: tenant.id,
    agentKeyId: caller.agentKey.id,
    action,
    params,
    amountMinor: p.amountMinor,
    currency: p.currency,
    summary,
    requestedApprover: approver,
    requiredApprovals: requiredApprovals(tenant, p.amountMinor, p.currency),
  });
  return approvalRequiredAnswer(deps, approval);
}

/**
 * If `error` refused the approval evidence, put that on the record in its own transaction (the
 * caller's transaction, which tried to consume it, has rolled back). Other errors pass untouched.
 */
export async function auditIfTokenRefused(
  deps: EngineDeps,
  caller: Caller,
  action: ApprovalAction,
  error: unknown,
  subject: string,
): Promise<void> {
  if (!(error instanceof RefusedError)) return;
  if (!error.code.startsWith('approval_token') && error.code !== 'invalid_approval_token') return;
  await deps.db.withTenant(caller.agentKey.tenantId, (client) =>
    appendAudit(client, {
      tenantId: caller.agentKey.tenantId,
      actorType: 'agent',
      actorId: caller.agentKey.id,
      action: 'approval_token.refused',
      subjectId: null,
      details: { action, code: error.code, reason: error.message, subject },
    }),
  );
}

/**
 * What an idempotency key is bound to: the request as the agent sent it (without the token and the
 * key), so a retry of a finished request replays its answer before any rule is evaluated again.
 */
export function requestDigest(action: ApprovalAction, input: object): Buffer {
  const { approval_token: _token, idempotency_key: _key, ...request } = input as Record<string, unknown>;
  return createHash('sha256').update(canonicalJson({ action, request })).digest();
}

function keyScope(caller: Caller, key: string) {
  return { tenantId: caller.agentKey.tenantId, agentKeyId: caller.agentKey.id, key };
}

export async function withIdempotency<T>(
  deps: EngineDeps,
  caller: Caller,
  action: ApprovalAction,
  key: string | undefined,
  digest: Buffer,
  fn: () => Promise<T>,
  /**
   * For a key whose first call has not answered: that call's answer, from the payment, refund or
   * schedule it linked to the key in its phase 1, or undefined. A call that crashed between its phases
   * leaves its key unanswered for good; the agent retrying with it gets that row's answer, not "in
   * progress".
   */
  recover?: (claim: {
    since: Date;
    paymentId: string | null;
    refundId: string | null;
    scheduledPaymentId: string | null;
  }) => Promise<T | undefined>,
): Promise<T> {
  if (key === undefined) return fn();
  const scope = keyScope(caller, key);
  const claim = await claimIdempotencyKey(deps.db, { ...scope, action, requestDigest: digest });
  if (claim.kind === 'in_progress') {
    const sofar = recover ? await recover(claim) : undefined;
    if (sofar === undefined) throw inProgressError(key, claim.since);
    return sofar;
  }
  if (claim.kind === 'replay') {
    const stored = claim.response as {
      error?: { code: string; message: string; next_step: string; retryable: boolean };
      payment?: ReturnType<typeof paymentJson>;
    };
    if (stored.error) {
      const { code, message, next_step, retryable } = stored.error;
      // The first answer again, with the payment (and refund) it named.
      if (stored.payment) throw new PaymentFailedError(code, message, next_step, retryable, stored.payment);
      throw new RefusedError(code, message, next_step, retryable);
    }
    return claim.response as T;
  }
  try {
    const result = await fn();
    if ((result as { status?: string }).status === 'approval_required')
      await releaseIdempotencyKey(deps.db, scope);
    else await completeIdempotencyKey(deps.db, scope, result);
    return result;
  } catch (error) {
    if (error instanceof PaymentFailedError) {
      // A payment or refund was attempted: the failure is the final answer for this key.
      await completeIdempotencyKey(deps.db, scope, {
        error: {
          code: error.code,
          message: error.message,
          next_step: error.nextStep,
          retryable: error.retryable,
        },
        payment: error.payment,
      });
    } else {
      await releaseIdempotencyKey(deps.db, scope);
    }
    throw error;
  }
}

function confirmation(
  payment: Payment,
  extra: { scheduled_date?: string | null; scheduled_payment_id?: string | null } = {},
): PaymentConfirmation {
  const json = paymentJson(payment);
  if (payment.status === 'failed') {
    throw new PaymentFailedError(
      payment.failureCode ?? 'payment_failed',
      `the payment of invoice ${payment.invoiceNumber} failed: ${payment.failureMessage ?? 'no reason given'}`,
      'a human has been alerted; call get_payment_status for details and next steps',
      false,
      json,
    );
  }
  return { success: true, ...json, ...extra };
}

/** What phase 1 of a pay or schedule call works from: the plan, the approval it consumed, the locked invoice. */
interface Approved<Params> {
  tenant: Tenant;
  p: Plan;
  params: Params;
  consumed: ConsumedApproval;
  invoice: Invoice;
}

/**
 * The start of pay_invoice and schedule_payment: admit the call (rate limit, the call's row, tenant),
 * then one transaction that plans it (`prepare`) and either asks a human or consumes the approval (bound
 * to exactly these params), re-reads the invoice under its lock, re-checks it, and writes phase 1
 * (`start`), so that everything before the provider call commits together or not at all. A refused
 * approval token rolls that back and is put on the record in a transaction of its own.
 */
async function openCall<Params extends PayParams | ScheduleParams, T>(
  deps: EngineDeps,
  caller: Caller,
  run: Run<'pay_invoice' | 'schedule_payment'>,
  input: PayInput,
  server: ServerEvidence | undefined,
  prepare: (client: Queryable, tenant: Tenant) => Promise<{ p: Plan; params: Params }>,
  start: (client: Queryable, approved: Approved<Params>) => Promise<T>,
): Promise<{ ask: ApprovalRequired } | { started: T }> {
  const evidence = evidenceOf(input.approval_token, server);
  let subject = String(input.invoice);
  const tenant = await admitMoneyMovingCall(deps.db, caller, run);
  try {
    return await deps.db.withTenant(tenant.id, async (client) => {
      const { p, params } = await prepare(client, tenant);
      subject = p.invoice.number;
      if (!evidence) {
        return {
          ask: await askForApproval(client, deps, caller, tenant, run.tool, params, p, input.approver),
        };
      }
      const consumed = await consumeApprovalToken(client, {
        tenantId: tenant.id,
        agentKey: caller.agentKey,
        action: run.tool,
        params,
        ...evidence,
      });
      // Locked here, after the key's daily-cap lock and the approval's, rather than when the plan first
      // read it: the cap's lock gives up after a few seconds, so a call stalled in phase 1 holds up a
      // capped key's next call for this invoice no longer than that, and a token that is no good is
      // refused before any wait for the invoice.
      const invoice = (await findInvoice(client, p.invoice.id, { forUpdate: true }))!;
      checkPayable(invoice, p);
      return { started: await start(client, { tenant, p, params, consumed, invoice }) };
    });
  } catch (error) {
    await auditIfTokenRefused(deps, caller, run.tool, error, subject);
    throw error;
  }
}

export async function payInvoice(
  deps: EngineDeps,
  caller: Caller,
  input: PayInput,
  server?: ServerEvidence,
): Promise<ApprovalRequired | PaymentConfirmation> {
  return recordRun(deps, caller, 'pay_invoice', (run) =>
    withIdempotency(
      deps,
      caller,
      'pay_invoice',
      input.idempotency_key,
      requestDigest('pay_invoice', input),
      async () => {
        const opened = await openCall(
          deps,
          caller,
          run,
          input,
          server,
          async (client, tenant) => {
            const p = await plan(client, tenant, caller, input);
            checkProviderTakes(deps, p.method.provider, p, 'payment');
            return { p, params: payParams(p) };
          },
          async (client, approved) => {
            const submission = await startPayment(client, caller, approved);
            // With the payment, in its transaction: a retry after a crash finds the call's payment.
            if (input.idempotency_key !== undefined)
              await linkIdempotencyKey(client, keyScope(caller, input.idempotency_key), {
                paymentId: submission.paymentId,
              });
            return submission;
          },
        );
        if ('ask' in opened) return opened.ask;
        const payment = await executeSubmission(deps, caller.agentKey.tenantId, opened.started);
        return confirmation(payment);
      },
      async ({ since, paymentId }) => {
        if (!paymentId) return undefined;
        const payment = await deps.db.withTenant(caller.agentKey.tenantId, (client) =>
          getPayment(client, paymentId),
        );
        // Still processing and recent: the first call may be in its provider call; its answer is to come.
        if (!payment || (payment.status === 'processing' && !interrupted(since))) return undefined;
        return confirmation(payment);
      },
    ),
  );
}

/**
 * Phase 1 of paying now, after openCall consumed the approval and locked the invoice: write the
 * `processing` payment and read back what phase 2 sends the provider. The caps were checked by the plan,
 * in this same transaction, under the key's daily-cap lock.
 */
async function startPayment(
  client: Queryable,
  caller: Caller,
  { tenant, p, consumed, invoice }: Approved<PayParams>,
): Promise<Submission> {
  const paymentId = randomUUID();
  const submission = await insertSubmission(client, {
    id: paymentId,
    tenantId: tenant.id,
    invoiceId: invoice.id,
    agentKeyId: caller.agentKey.id,
    approvalId: consumed.id,
    amountMinor: p.amountMinor,
    currency: p.currency,
    rail: p.rail,
    provider: p.method.provider,
    paymentMethodId: p.method.id,
    approvedBy: consumed.approvedBy,
  });
  await transitionInvoice(client, invoice.id, 'approved', 'processing');
  await appendAudit(client, {
    tenantId: tenant.id,
    actorType: 'agent',
    actorId: caller.agentKey.id,
    action: 'payment.started',
    subjectId: paymentId,
    details: {
      invoice_number: invoice.number,
      amount_minor: p.amountMinor,
      currency: p.currency,
      rail: p.rail,
      provider: p.method.provider,
      approved_by: consumed.approvedBy,
      approval_id: consumed.id,
    },
  });
  return submission;
}

export async function schedulePayment(
  deps: EngineDeps,
  caller: Caller,
  input: ScheduleInput,
  server?: ServerEvidence,
): Promise<ApprovalRequired | PaymentConfirmation> {
  return recordRun(deps, caller, 'schedule_payment', async (run) => {
    if (typeof input.scheduled_date !== 'string')
      throw new UsageError('scheduled_date must be a date in YYYY-MM-DD form');
    const date = checkDate(input.scheduled_date, 'scheduled_date');
    return withIdempotency(
      deps,
      caller,
      'schedule_payment',
      input.idempotency_key,
      requestDigest('schedule_payment', input),
      async () => {
        const opened = await openCall(
          deps,
          caller,
          run,
          input,
          server,
          async (client, tenant) => {
            checkScheduleDate(date, tenant);
            const p = await plan(client, tenant, caller, input, { day: date });
            checkProviderTakes(deps, p.method.provider, p, 'payment');
            if (p.rail === 'ach') checkAchScheduleDate(date, tenant, Boolean(input.approval_token || server));
            return { p, params: { ...payParams(p), scheduled_date: date } };
          },
          async (client, approved) => {
            const scheduled = await startSchedule(client, caller, approved);
            // With the schedule, in its transaction (the token is consumed from here on): a retry with
            // the key, after this call failed or died, answers with this schedule instead of a refusal.
            if (input.idempotency_key !== undefined)
              await linkIdempotencyKey(client, keyScope(caller, input.idempotency_key), {
                scheduledPaymentId: scheduled.scheduled_payment_id!,
              });
            return scheduled;
          },
        );
        if ('ask' in opened) return opened.ask;
        // Test-only: a process killed here has its schedule and the key's link committed, and no answer.
        crashPoint('after_phase1');
        return opened.started;
      },
      async ({ scheduledPaymentId }) => {
        if (!scheduledPaymentId) return undefined;
        const made = await deps.db.withTenant(caller.agentKey.tenantId, (client) =>
          findSchedule(client, scheduledPaymentId),
        );
        // Phase 1 is the whole of a schedule call (no provider call follows), so once the schedule is
        // linked its answer is decided: no "in progress" wait. The date is the one the first call
        // answered with, the request's (the key's digest binds it), not the row's, which a reschedule
        // after a failed run moves; what became of the schedule since is get_payment_status's to tell,
        // as after a replayed answer.
        return made ? scheduleAnswer({ ...made, date }) : undefined;
      },
    );
  });
}

/** A schedule's date is today or later in the tenant's time zone, and at most a year ahead. */
function checkScheduleDate(date: string, tenant: Tenant): void {
  const today = todayIn(tenant.timezone);
  if (date < today) {
    throw new UsageError(
      `scheduled_date ${date} is in the past (today is ${today} in ${tenant.timezone})`,
      'invalid_date',
      'pick today or a later date',
    );
  }
  if (date > addDays(today, MAX_SCHEDULE_AHEAD_DAYS)) {
    throw new UsageError(`scheduled_date ${date} is more than a year ahead`, 'invalid_date');
  }
}

/**
 * ACH moves money on banking days only. A schedule for a weekend or a Federal Reserve holiday would go to
 * the bank on the next banking day, later than the date the human approved: refused, naming the banking
 * days either side (in range) for the human to choose from. An approval minted before this rule for such a
 * date cannot be used; the agent is told to ask again for the new date, which needs its own approval.
 */
function checkAchScheduleDate(date: string, tenant: Tenant, approved: boolean): void {
  const reason = whyNotBusinessDay(date);
  if (!reason) return;
  const today = todayIn(tenant.timezone);
  const before = previousBusinessDay(date);
  const after = nextBusinessDay(date);
  const choices = [
    before >= today ? `${before} (the banking day before)` : null,
    after <= addDays(today, MAX_SCHEDULE_AHEAD_DAYS) ? `${after} (the banking day after)` : null,
  ].filter((choice) => choice !== null);
  const again = approved
    ? 'call schedule_payment again with that date and without approval_token: the new date needs its own approval'
    : 'call schedule_payment again with that date';
  throw new UsageError(
    `scheduled_date ${date} is ${reason}; ACH payments move on banking days only`,
    'invalid_date',
    `ask the human which banking day they want, ${choices.join(' or ')}, then ${again}`,
  );
}

/** Phase 1 of scheduling, after openCall consumed the approval and locked the invoice: write the schedule. */
async function startSchedule(
  client: Queryable,
  caller: Caller,
  { tenant, p, params, consumed, invoice }: Approved<ScheduleParams>,
): Promise<PaymentConfirmation> {
  const scheduledId = randomUUID();
  const date = params.scheduled_date;
  await client.query(
    `INSERT INTO scheduled_payments (id, tenant_id, invoice_id, agent_key_id, approval_id, amount_minor, currency, rail, payment_method_id, scheduled_date, approved_by)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
    [
      scheduledId,
      tenant.id,
      invoice.id,
      caller.agentKey.id,
      consumed.id,
      p.amountMinor,
      p.currency,
      p.rail,
      p.method.id,
      date,
      consumed.approvedBy,
    ],
  );
  await transitionInvoice(client, invoice.id, 'approved', 'scheduled');
  await appendAudit(client, {
    tenantId: tenant.id,
    actorType: 'agent',
    actorId: caller.agentKey.id,
    action: 'payment.scheduled',
    subjectId: scheduledId,
    details: {
      invoice_number: invoice.number,
      amount_minor: p.amountMinor,
      currency: p.currency,
      rail: p.rail,
      scheduled_date: date,
      approved_by: consumed.approvedBy,
    },
  });
  return scheduleAnswer({
    id: scheduledId,
    date,
    invoiceId: p.invoice.id,
    invoiceNumber: p.invoice.number,
    payee: p.invoice.vendorName,
    amountMinor: p.amountMinor,
    currency: p.currency,
    rail: p.rail,
    provider: p.method.provider,
    approvedBy: consumed.approvedBy,
  });
}

/** What a schedule_payment call answers: its schedule, from phase 1 or, for a retried key, from the row. */
interface ScheduleMade {
  id: string;
  date: string;
  invoiceId: string;
  invoiceNumber: string;
  payee: string;
  amountMinor: number;
  currency: string;
  rail: Rail;
  provider: Provider;
  approvedBy: string[];
}

function scheduleAnswer(s: ScheduleMade): PaymentConfirmation {
  return {
    success: true as const,
    status: 'scheduled',
    payment_id: null,
    scheduled_payment_id: s.id,
    scheduled_date: s.date,
    invoice_id: s.invoiceId,
    invoice_number: s.invoiceNumber,
    payee: s.payee,
    amount: formatAmount(s.amountMinor, s.currency),
    amount_minor: s.amountMinor,
    currency: s.currency,
    payment_method: s.rail,
    provider: s.provider,
    approved_by: s.approvedBy[0] ?? null,
    approvers: s.approvedBy,
    gateway_reference: null,
    confirmation_number: null,
    paid_at: null,
  } as unknown as PaymentConfirmation;
}

/** A schedule as its call's answer needs it (the date comes from the caller: see schedulePayment). */
async function findSchedule(client: Queryable, id: string): Promise<Omit<ScheduleMade, 'date'> | null> {
  const { rows } = await client.query<{
    invoice_id: string;
    invoice_number: string;
    payee: string;
    amount_minor: number;
    currency: string;
    rail: Rail;
    provider: Provider;
    approved_by: string[];
  }>(
    `SELECT s.invoice_id, i.number AS invoice_number, c.name AS payee, s.amount_minor, s.currency, s.rail,
            m.provider, s.approved_by
       FROM scheduled_payments s
       JOIN invoices i ON i.id = s.invoice_id
       JOIN counterparties c ON c.id = i.counterparty_id
       JOIN payment_methods m ON m.id = s.payment_method_id
      WHERE s.id = $1`,
    [id],
  );
  const row = rows[0];
  if (!row) return null;
  return {
    id,
    invoiceId: row.invoice_id,
    invoiceNumber: row.invoice_number,
    payee: row.payee,
    amountMinor: row.amount_minor,
    currency: row.currency.trim(),
    rail: row.rail,
    provider: row.provider,
    approvedBy: row.approved_by,
  };
}
