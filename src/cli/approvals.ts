/** Humans at the terminal: approving and rejecting, and looking at payments and alerts. */
import type { Command } from 'commander';
import { type ApprovalStatus, approvalJson, approve, listApprovals, reject } from '../approvals/approvals.js';
import { isUuid } from '../db/pool.js';
import { confirmStillAllowed, type User } from '../directory/users.js';
import { RefusedError, UsageError } from '../errors.js';
import { listAlerts, resolveAlert } from '../payments/alerts.js';
import { recordHeldPaymentNotMade } from '../payments/held.js';
import { findPayment, listPayments, paymentJson } from '../payments/payments.js';
import { refundsOf } from '../payments/refund.js';
import { cancelSchedule } from '../payments/status.js';
import { type CliContext, checkId, table } from './context.js';

type Run = (fn: (ctx: CliContext) => Promise<void>) => Promise<void>;

const STATUSES: readonly ApprovalStatus[] = ['pending', 'approved', 'rejected', 'expired', 'consumed'];
const ALERT_STATUSES: readonly string[] = ['open', 'resolved'];

/**
 * Listings show the newest rows up to a limit (payments 200, alerts 500, as before; `--limit` up to
 * MAX_LIST_LIMIT). A list cut short says so on stderr, never on stdout: a finance user must not take a
 * partial list for the whole, and the --json array other programs parse keeps its shape.
 */
const MAX_LIST_LIMIT = 10_000;

function listLimit(value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!/^\d+$/.test(value) || n < 1 || n > MAX_LIST_LIMIT)
    throw new UsageError(`--limit "${value}" must be a whole number from 1 to ${MAX_LIST_LIMIT}`);
  return n;
}

/** Rows were fetched with one more than `limit`; keep `limit` of them and say on stderr if more exist. */
function cutToLimit<T>(rows: T[], limit: number, what: string): T[] {
  if (rows.length <= limit) return rows;
  process.stderr.write(
    limit < MAX_LIST_LIMIT
      ? `paygate: showing the newest ${limit} ${what}; there are more: use --limit N (up to ${MAX_LIST_LIMIT}) to see more\n`
      : `paygate: showing the newest ${limit} ${what}; there are more than ${MAX_LIST_LIMIT}, the most --limit shows\n`,
  );
  return rows.slice(0, limit);
}

/**
 * The human behind `--as`, proven by their personal access token. An agent with a shell can type any
 * email address, so the email only has to agree with the token; it never stands alone.
 */
async function provenHuman(ctx: CliContext, email: string): Promise<User> {
  const user = await ctx.tokenHolder(
    `--as ${email} is not enough: approving needs ${email}'s personal access token`,
  );
  if (user.email.toLowerCase() !== email.toLowerCase()) {
    throw new RefusedError(
      'token_not_yours',
      `the personal access token given is not ${email}'s`,
      `use ${email}'s own token`,
    );
  }
  return user;
}

export function registerApprovalCommands(program: Command, run: Run): void {
  const approvals = program.command('approvals').description('approve or reject what agents asked to do');
  approvals
    .command('list')
    .requiredOption('--tenant <slug>')
    .option('--status <status>', STATUSES.join('|'))
    .action((o: { tenant: string; status?: string }) =>
      run(async (ctx) => {
        if (o.status && !(STATUSES as readonly string[]).includes(o.status))
          throw new UsageError(`--status "${o.status}" is not one of ${STATUSES.join(', ')}`);
        const t = await ctx.tenant(o.tenant);
        await ctx.human(t);
        const rows = (
          await (
            await ctx.db()
          ).withTenant(t.id, (c) => listApprovals(c, { status: o.status as ApprovalStatus | undefined }))
        ).map(approvalJson);
        ctx.print(rows, () =>
          table(rows, ['approval_id', 'status', 'amount', 'currency', 'expires_at', 'summary']),
        );
      }),
    );
  approvals
    .command('approve <approvalId>')
    .description('approve as yourself; prints the approval token once when fully approved')
    .requiredOption('--as <email>', 'your email (your personal access token must match it)')
    .action((approvalId: string, o: { as: string }) =>
      run(async (ctx) => {
        checkApprovalId(approvalId);
        const user = await provenHuman(ctx, o.as);
        const { approval, approvalToken, standing } = await approve(
          await ctx.db(),
          user.tenantId,
          user,
          approvalId,
        );
        ctx.print(
          {
            approval_id: approval.id,
            status: approval.status,
            approval_token: approvalToken ?? null,
            approved_by: approval.approvedBy,
            required_approvals: approval.requiredApprovals,
          },
          approvalToken
            ? `approved: ${approval.summary}\napproval token (shown once; give it to the agent):\n${approvalToken}`
            : `recorded your approval (${standing.counted.length} of ${approval.requiredApprovals}); another approver is needed${
                standing.lapsed.length ? ` (no longer counted: ${standing.lapsed.join('; ')})` : ''
              }`,
        );
      }),
    );
  approvals
    .command('reject <approvalId>')
    .requiredOption('--as <email>')
    .option('--reason <text>')
    .action((approvalId: string, o: { as: string; reason?: string }) =>
      run(async (ctx) => {
        checkApprovalId(approvalId);
        // The approval page keeps the first 500 characters; here the human can still shorten it.
        if (o.reason !== undefined && o.reason.length > 500)
          throw new UsageError(`--reason is ${o.reason.length} characters: at most 500`);
        const user = await provenHuman(ctx, o.as);
        const approval = await reject(await ctx.db(), user.tenantId, user, approvalId, o.reason);
        ctx.print({ approval_id: approval.id, status: approval.status }, `rejected: ${approval.summary}`);
      }),
    );

  program
    .command('schedules')
    .description('scheduled payments')
    .command('cancel')
    .description("cancel a scheduled payment still waiting for its date (an approver's or admin's token)")
    .requiredOption('--tenant <slug>')
    .option('--invoice <number>', 'the invoice it pays')
    .option('--id <scheduledPaymentId>', 'or the scheduled payment id')
    .action((o: { tenant: string; invoice?: string; id?: string }) =>
      run(async (ctx) => {
        if ((o.invoice === undefined) === (o.id === undefined))
          throw new UsageError('give --invoice NUMBER or --id SCHEDULED_PAYMENT_ID (one of them)');
        if (o.id !== undefined)
          checkId(
            o.id,
            'a scheduled payment id',
            'use the scheduled_payment_id schedule_payment answered, or --invoice NUMBER',
          );
        const t = await ctx.tenant(o.tenant);
        const user = (await ctx.human(t))!;
        if (user.role === 'viewer')
          throw new RefusedError(
            'approver_required',
            `${user.email} is a viewer; cancelling a scheduled payment needs an approver or an admin`,
          );
        const cancelled = await (await ctx.db()).withTenant(t.id, async (c) => {
          // The human as they are now: the token was read in an earlier transaction.
          await confirmStillAllowed(c, user, ['approver', 'admin']);
          return cancelSchedule(
            c,
            t.id,
            { ...(o.invoice ? { invoice: o.invoice } : {}), ...(o.id ? { scheduled_payment: o.id } : {}) },
            { actorType: 'user', actorId: user.email },
          );
        });
        ctx.print(
          cancelled,
          `cancelled the payment scheduled for ${cancelled.scheduled_date}; the invoice is approved again`,
        );
      }),
    );

  const payments = program.command('payments').description('payments made through paygate');
  payments
    .command('list')
    .requiredOption('--tenant <slug>')
    .option('--limit <n>', `the newest N payments (default 200, at most ${MAX_LIST_LIMIT})`)
    .action((o: { tenant: string; limit?: string }) =>
      run(async (ctx) => {
        const limit = listLimit(o.limit, 200);
        const rows = cutToLimit(
          await ctx.readTenant(o.tenant, (c) => listPayments(c, limit + 1)),
          limit,
          'payments',
        ).map(paymentJson);
        ctx.print(rows, () =>
          table(rows, [
            'payment_id',
            'invoice_number',
            'amount',
            'currency',
            'status',
            'payment_method',
            'confirmation_number',
            'approved_by',
          ]),
        );
      }),
    );
  payments
    .command('show <payment>')
    .description('one payment by id, provider reference or confirmation number (of your tenant, or --tenant)')
    .option('--tenant <slug>', "default: the tenant of your personal access token's user")
    .action((ref: string, o: { tenant?: string }) =>
      run(async (ctx) => {
        // DESIGN: `payments show ID`. A personal access token belongs to one tenant's human, so
        // without --tenant the token says which tenant to look in.
        const { tenant: t } = await ctx.tenantAndHuman(o.tenant);
        const out = await (await ctx.db()).withTenant(t.id, async (c) => {
          const payment = await findPayment(c, ref);
          if (!payment)
            throw new RefusedError('payment_not_found', `no payment "${ref}" in tenant ${t.slug}`);
          return {
            ...paymentJson(payment),
            refunds: await refundsOf(c, payment.id),
            alerts: await listAlerts(c, { paymentId: payment.id }),
          };
        });
        ctx.print(out, () =>
          Object.entries(out)
            .map(
              ([k, v]) =>
                `${k.padEnd(20)} ${typeof v === 'object' && v !== null ? JSON.stringify(v) : String(v)}`,
            )
            .join('\n'),
        );
      }),
    );

  payments
    .command('resolve <payment>')
    .description(
      'record that a payment held for a human (alert payment_outcome_unverifiable) was not made, after checking at its provider (an admin token)',
    )
    .option('--tenant <slug>', "default: the tenant of your personal access token's user")
    .option(
      '--not-made',
      'the provider shows no such payment: fail it and put its invoice up for payment again',
    )
    .option('--note <text>', 'what was checked, for the audit log')
    .action((ref: string, o: { tenant?: string; notMade?: boolean; note?: string }) =>
      run(async (ctx) => {
        if (!o.notMade)
          throw new UsageError(
            "say what you found: --not-made (if the provider shows it was made, resend its webhook from the provider's dashboard instead: paygate records it)",
          );
        const { tenant: t, user } = await ctx.tenantAndHuman(o.tenant);
        const { payment, paidBy } = await (await ctx.db()).withTenant(t.id, (c) =>
          recordHeldPaymentNotMade(c, t.id, ref, user, o.note),
        );
        ctx.print(
          {
            ...paymentJson(payment),
            failure: { code: payment.failureCode, message: payment.failureMessage },
            invoice_paid_by: paidBy?.id ?? null,
          },
          paidBy
            ? `payment ${payment.confirmationNumber} recorded not made; invoice ${payment.invoiceNumber} is paid by payment ${paidBy.confirmationNumber}, which ${paidBy.provider} reported succeeded`
            : `payment ${payment.confirmationNumber} recorded not made; invoice ${payment.invoiceNumber} is approved again (paying it needs a new approval)`,
        );
      }),
    );

  const alerts = program.command('alerts').description('what needs a human');
  alerts
    .command('resolve <alertId>')
    .description("mark an alert dealt with (an approver's or admin's token)")
    .option('--tenant <slug>', "default: the tenant of your personal access token's user")
    .option('--note <text>', 'what was done about it, for the audit log')
    .action((alertId: string, o: { tenant?: string; note?: string }) =>
      run(async (ctx) => {
        checkId(alertId, 'an alert id', 'use an alert_id from `paygate alerts list`');
        const { tenant: t, user } = await ctx.tenantAndHuman(o.tenant);
        const alert = await (await ctx.db()).withTenant(t.id, (c) =>
          resolveAlert(c, t.id, alertId, user, o.note),
        );
        ctx.print(alert, `alert ${alert.alert_id} (${alert.kind}) resolved`);
      }),
    );
  alerts
    .command('list')
    .requiredOption('--tenant <slug>')
    .option('--status <status>', ALERT_STATUSES.join('|'))
    .option('--limit <n>', `the newest N alerts (default 500, at most ${MAX_LIST_LIMIT})`)
    .action((o: { tenant: string; status?: string; limit?: string }) =>
      run(async (ctx) => {
        if (o.status !== undefined && !ALERT_STATUSES.includes(o.status))
          throw new UsageError(`--status "${o.status}" is not one of ${ALERT_STATUSES.join(', ')}`);
        const limit = listLimit(o.limit, 500);
        const rows = cutToLimit(
          await ctx.readTenant(o.tenant, (c) => listAlerts(c, { status: o.status, limit: limit + 1 })),
          limit,
          'alerts',
        );
        ctx.print(rows, () =>
          rows.length === 0
            ? '(no alerts)'
            : rows
                .map((a) => {
                  const analysis = a.analysis as {
                    summary?: string;
                    next_step?: string;
                    source?: string;
                  } | null;
                  return [
                    `${a.created_at}  ${a.severity.toUpperCase()}  ${a.kind}  ${a.code ?? ''}`,
                    `  ${a.message}`,
                    `  next: ${a.next_step ?? ''}`,
                    analysis?.summary
                      ? `  analysis (${analysis.source}): ${analysis.summary} — ${analysis.next_step ?? ''}`
                      : null,
                  ]
                    .filter(Boolean)
                    .join('\n');
                })
                .join('\n\n'),
        );
      }),
    );
}

/** A malformed id is bad usage (exit 2), before anyone is asked for a token. */
function checkApprovalId(approvalId: string): void {
  if (!isUuid(approvalId))
    throw new UsageError(
      `"${approvalId}" is not an approval id: use the approval_id from \`paygate approvals list\` (a UUID)`,
    );
}
