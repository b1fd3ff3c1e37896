/** Setting a tenant up: tenants, users, agent keys, vendors, payment methods, invoices. */
import { type Command, Option } from 'commander';
import { createAgentKey, disableAgentKey, listAgentKeys } from '../directory/agent-keys.js';
import { addVendor, listVendors } from '../directory/counterparties.js';
import { createSealer, resolveSecret } from '../directory/encryption.js';
import {
  addPaymentMethod,
  checkRail,
  listPaymentMethods,
  paymentMethodJson,
  removePaymentMethod,
} from '../directory/payment-methods.js';
import { createTenant } from '../directory/tenants.js';
import {
  addUser,
  changeUserAccess,
  checkRole,
  countAdmins,
  disableUser,
  findUserByEmail,
  listUsers,
  type User,
} from '../directory/users.js';
import { UsageError } from '../errors.js';
import type { Provider } from '../gateways/types.js';
import { formatAmount } from '../money.js';
import { addInvoice, invoiceJson, listInvoices } from '../payments/invoices.js';
import { type CliContext, checkId, currencyNeedsAmount, money, table } from './context.js';

type Run = (fn: (ctx: CliContext) => Promise<void>) => Promise<void>;

export function registerAdminCommands(program: Command, run: Run): void {
  const tenant = program.command('tenant').description('manage tenants');
  tenant
    .command('create <slug>')
    .description('create a tenant (no credentials needed: it starts with no users)')
    .option('--name <name>', 'display name')
    .option('--timezone <tz>', 'IANA time zone for scheduled dates', 'UTC')
    .option('--dual-approval-above <amount>', 'two distinct approvers at or above this amount')
    .option('--currency <cur>', 'currency of --dual-approval-above')
    .action(
      (slug: string, o: { name?: string; timezone: string; dualApprovalAbove?: string; currency?: string }) =>
        run(async (ctx) => {
          currencyNeedsAmount(o.currency, { '--dual-approval-above': o.dualApprovalAbove });
          const dual = o.dualApprovalAbove
            ? money(o.dualApprovalAbove, o.currency, '--dual-approval-above')
            : undefined;
          const created = await createTenant(await ctx.db(), {
            slug,
            name: o.name,
            timezone: o.timezone,
            dualApproval: dual ? { thresholdMinor: dual.amountMinor, currency: dual.currency } : undefined,
          });
          ctx.print(
            { tenant_id: created.id, slug: created.slug, name: created.name, timezone: created.timezone },
            `created tenant ${created.slug} (${created.id})`,
          );
        }),
    );

  const user = program.command('user').description('manage humans');
  user
    .command('add <email>')
    .description(
      "add a human; prints their personal access token once (needs an admin's token, except the first admin)",
    )
    .requiredOption('--tenant <slug>')
    .requiredOption('--role <role>', 'viewer|approver|admin')
    .option('--limit <amount>', 'largest amount this human may approve')
    .option('--currency <cur>', 'currency of --limit')
    .action((email: string, o: { tenant: string; role: string; limit?: string; currency?: string }) =>
      run(async (ctx) => {
        const role = checkRole(o.role);
        currencyNeedsAmount(o.currency, { '--limit': o.limit });
        const limit = o.limit ? money(o.limit, o.currency, '--limit') : undefined;
        const t = await ctx.tenant(o.tenant);
        const db = await ctx.db();
        const hasAdmin = (await db.withTenant(t.id, countAdmins)) > 0;
        const actor = hasAdmin ? await ctx.human(t) : null;
        const { user: added, token } = await addUser(db, t.id, actor, { email, role, limit });
        ctx.print(
          { user_id: added.id, email: added.email, role: added.role, token },
          `added ${added.email} as ${added.role}\npersonal access token (shown once, keep it secret):\n${token}`,
        );
      }),
    );

  user
    .command('disable <email>')
    .description(
      "revoke a human: their token stops working and approvals they gave that moved no money yet lapse (an admin's token)",
    )
    .requiredOption('--tenant <slug>')
    .action((email: string, o: { tenant: string }) =>
      run(async (ctx) => {
        const t = await ctx.tenant(o.tenant);
        const admin = (await ctx.human(t))!;
        const disabled = await disableUser(await ctx.db(), t.id, admin, email);
        ctx.print(
          { user_id: disabled.id, email: disabled.email, role: disabled.role, disabled: true },
          `disabled ${disabled.email} (${disabled.role}); their token no longer works`,
        );
      }),
    );

  user
    .command('set <email>')
    .description(
      "change a human's role or approval limit (an admin's token); approvals they gave that moved no money yet are judged by their new rights when used",
    )
    .requiredOption('--tenant <slug>')
    .option('--role <role>', 'viewer|approver|admin')
    .option('--limit <amount>', 'largest amount this human may approve')
    .addOption(new Option('--remove-limit', 'no approval limit at all').conflicts(['limit', 'currency']))
    .option('--currency <cur>', 'currency of --limit')
    .action(
      (
        email: string,
        o: { tenant: string; role?: string; limit?: string; removeLimit?: boolean; currency?: string },
      ) =>
        run(async (ctx) => {
          const role = o.role === undefined ? undefined : checkRole(o.role);
          currencyNeedsAmount(o.currency, { '--limit': o.limit });
          // An empty --limit ("$LIMIT" unset) is money()'s to refuse, not a limit left as it was.
          const limit = o.removeLimit
            ? null
            : o.limit !== undefined
              ? money(o.limit, o.currency, '--limit')
              : undefined;
          const t = await ctx.tenant(o.tenant);
          const admin = (await ctx.human(t))!;
          const { before, after } = await changeUserAccess(await ctx.db(), t.id, admin, email, {
            role,
            limit,
          });
          const { user_id: _, email: __, ...previous } = accessJson(before);
          ctx.print(
            { ...accessJson(after), previous },
            `${after.email}: ${accessText(before)} -> ${accessText(after)}`,
          );
        }),
    );
  user
    .command('list')
    .description("the tenant's humans, their roles and approval limits (any user's token of the tenant)")
    .requiredOption('--tenant <slug>')
    .action((o: { tenant: string }) =>
      run(async (ctx) => {
        const rows = (await ctx.readTenant(o.tenant, listUsers)).map((u) => ({
          ...accessJson(u),
          status: u.disabledAt ? 'disabled' : 'active',
          created_at: u.createdAt.toISOString(),
          disabled_at: u.disabledAt?.toISOString() ?? null,
        }));
        ctx.print(rows, () =>
          table(rows, ['email', 'role', 'approval_limit', 'approval_limit_currency', 'status', 'user_id']),
        );
      }),
    );

  const agentKey = program.command('agent-key').description('manage agent keys');
  agentKey
    .command('list')
    .description(
      "the tenant's agent keys: prefix, caps, whom they act for, last call (any user's token of the tenant)",
    )
    .requiredOption('--tenant <slug>')
    .action((o: { tenant: string }) =>
      run(async (ctx) => {
        const rows = (await ctx.readTenant(o.tenant, listAgentKeys)).map((k) => ({
          agent_key_id: k.id,
          name: k.name,
          key_prefix: k.keyPrefix,
          acts_for: k.actsForEmail,
          max_per_payment:
            k.maxPerPaymentMinor === null ? null : formatAmount(k.maxPerPaymentMinor, k.capsCurrency!),
          max_per_day: k.maxPerDayMinor === null ? null : formatAmount(k.maxPerDayMinor, k.capsCurrency!),
          max_per_payment_minor: k.maxPerPaymentMinor,
          max_per_day_minor: k.maxPerDayMinor,
          caps_currency: k.capsCurrency,
          rate_limit_per_minute: k.rateLimitPerMinute,
          status: k.disabled ? 'disabled' : 'active',
          created_at: k.createdAt.toISOString(),
          disabled_at: k.disabledAt?.toISOString() ?? null,
          last_call_at: k.lastCallAt?.toISOString() ?? null,
        }));
        ctx.print(rows, () =>
          table(rows, [
            'name',
            'key_prefix',
            'status',
            'acts_for',
            'max_per_payment',
            'max_per_day',
            'caps_currency',
            'last_call_at',
            'agent_key_id',
          ]),
        );
      }),
    );

  agentKey
    .command('disable <agentKeyId>')
    .description(
      "revoke an agent key: from its next request it can do nothing (an admin's token; what humans already approved for it still runs: see schedules cancel)",
    )
    .requiredOption('--tenant <slug>')
    .action((agentKeyId: string, o: { tenant: string }) =>
      run(async (ctx) => {
        checkId(agentKeyId, 'an agent key id', 'use the agent_key_id `paygate agent-key create` printed');
        const t = await ctx.tenant(o.tenant);
        const admin = (await ctx.human(t))!;
        const disabled = await disableAgentKey(await ctx.db(), t.id, admin, agentKeyId);
        ctx.print(
          { agent_key_id: disabled.id, name: disabled.name, key_prefix: disabled.keyPrefix, disabled: true },
          `disabled agent key ${disabled.name} (${disabled.keyPrefix}…); it can no longer call paygate`,
        );
      }),
    );
  agentKey
    .command('create')
    .description("create an agent key; prints it once (needs an admin's token)")
    .requiredOption('--tenant <slug>')
    .option('--name <name>', 'what the key is for', 'agent')
    .option('--acts-for <email>', 'the human this agent acts for (they cannot approve its requests)')
    .option('--max-per-payment <amount>')
    .option('--max-per-day <amount>')
    .option('--currency <cur>', 'currency of the caps')
    .option('--rate-limit <n>', 'money-moving calls per minute', '60')
    .action(
      (o: {
        tenant: string;
        name: string;
        actsFor?: string;
        maxPerPayment?: string;
        maxPerDay?: string;
        currency?: string;
        rateLimit: string;
      }) =>
        run(async (ctx) => {
          currencyNeedsAmount(o.currency, {
            '--max-per-payment': o.maxPerPayment,
            '--max-per-day': o.maxPerDay,
          });
          const perPayment = o.maxPerPayment
            ? money(o.maxPerPayment, o.currency, '--max-per-payment')
            : undefined;
          const perDay = o.maxPerDay ? money(o.maxPerDay, o.currency, '--max-per-day') : undefined;
          const rate = Number(o.rateLimit);
          if (!Number.isInteger(rate) || rate < 1 || rate > 10_000)
            throw new UsageError(`--rate-limit "${o.rateLimit}" must be a whole number from 1 to 10000`);
          const t = await ctx.tenant(o.tenant);
          const admin = (await ctx.human(t))!;
          const db = await ctx.db();
          let actsForUserId: string | undefined;
          if (o.actsFor) {
            const human = await db.withTenant(t.id, (client) => findUserByEmail(client, o.actsFor!));
            if (!human) throw new UsageError(`--acts-for: no user ${o.actsFor} in tenant ${t.slug}`);
            actsForUserId = human.id;
          }
          const { agentKey, key } = await createAgentKey(db, t.id, admin, {
            name: o.name,
            actsForUserId,
            maxPerPaymentMinor: perPayment?.amountMinor,
            maxPerDayMinor: perDay?.amountMinor,
            capsCurrency: perPayment?.currency ?? perDay?.currency,
            rateLimitPerMinute: rate,
          });
          ctx.print(
            { agent_key_id: agentKey.id, key },
            `created agent key ${agentKey.name} (${agentKey.id})\nagent key (shown once):\n${key}`,
          );
        }),
    );

  const vendor = program.command('vendor').description('manage vendors');
  vendor
    .command('add <name>')
    .description("add a vendor (needs an admin's token)")
    .requiredOption('--tenant <slug>')
    .option('--stripe-account <acct>')
    .option('--paypal-email <email>')
    .option('--routing <n>', 'ABA routing number')
    .option('--account <n>', 'bank account number (stored encrypted; shown only as last4)')
    .action(
      (
        name: string,
        o: {
          tenant: string;
          stripeAccount?: string;
          paypalEmail?: string;
          routing?: string;
          account?: string;
        },
      ) =>
        run(async (ctx) => {
          if ((o.routing === undefined) !== (o.account === undefined))
            throw new UsageError('--routing and --account go together');
          const t = await ctx.tenant(o.tenant);
          const admin = (await ctx.human(t))!;
          const sealer = createSealer(await resolveSecret(ctx.config));
          const added = await addVendor(await ctx.db(), t.id, admin, sealer, {
            name,
            stripeAccount: o.stripeAccount,
            paypalEmail: o.paypalEmail,
            bank: o.routing && o.account ? { routingNumber: o.routing, accountNumber: o.account } : undefined,
          });
          ctx.print(
            {
              vendor_id: added.id,
              name: added.name,
              stripe_account: added.stripeAccount,
              paypal_email: added.paypalEmail,
              bank_account_last4: added.achAccountLast4,
            },
            `added vendor ${added.name} (${added.id})`,
          );
        }),
    );
  vendor
    .command('list')
    .requiredOption('--tenant <slug>')
    .action((o: { tenant: string }) =>
      run(async (ctx) => {
        const t = await ctx.tenant(o.tenant);
        await ctx.human(t);
        const rows = (await listVendors(await ctx.db(), t.id)).map((v) => ({
          vendor_id: v.id,
          name: v.name,
          stripe_account: v.stripeAccount,
          paypal_email: v.paypalEmail,
          bank_account_last4: v.achAccountLast4,
        }));
        ctx.print(rows, () =>
          table(rows, ['name', 'stripe_account', 'paypal_email', 'bank_account_last4', 'vendor_id']),
        );
      }),
    );

  const pm = program
    .command('payment-method')
    .description('manage payment methods (provider tokens only, never card numbers)');
  pm.command('add')
    .description("add a payment method (needs an admin's token)")
    .requiredOption('--tenant <slug>')
    .requiredOption('--rail <rail>', 'stripe|paypal|ach')
    .requiredOption('--token <token>', 'the provider token, e.g. pm_card_visa')
    .option('--provider <provider>', 'for ach: stripe or nacha (default: from the token)')
    .option('--label <text>')
    .option('--brand <brand>')
    .option('--last4 <digits>')
    .option('--bank-name <name>')
    .option(
      '--customer <cus>',
      'Stripe: the Customer the PaymentMethod is attached to (needed off-session in live mode)',
    )
    .action(
      (o: {
        tenant: string;
        rail: string;
        token: string;
        provider?: string;
        label?: string;
        brand?: string;
        last4?: string;
        bankName?: string;
        customer?: string;
      }) =>
        run(async (ctx) => {
          const rail = checkRail(o.rail);
          const t = await ctx.tenant(o.tenant);
          const admin = (await ctx.human(t))!;
          const method = await addPaymentMethod(await ctx.db(), t.id, admin, {
            rail,
            token: o.token,
            provider: o.provider as Provider | undefined,
            label: o.label,
            brand: o.brand,
            last4: o.last4,
            bankName: o.bankName,
            customer: o.customer,
          });
          ctx.print(paymentMethodJson(method), `added ${method.rail} payment method ${method.id}`);
        }),
    );
  pm.command('list')
    .requiredOption('--tenant <slug>')
    .action((o: { tenant: string }) =>
      run(async (ctx) => {
        const rows = (await ctx.readTenant(o.tenant, listPaymentMethods)).map(paymentMethodJson);
        ctx.print(rows, () =>
          table(rows, ['payment_method_id', 'rail', 'provider', 'label', 'brand', 'last4']),
        );
      }),
    );
  pm.command('remove <id>')
    .requiredOption('--tenant <slug>')
    .action((id: string, o: { tenant: string }) =>
      run(async (ctx) => {
        const t = await ctx.tenant(o.tenant);
        const admin = (await ctx.human(t))!;
        await removePaymentMethod(await ctx.db(), t.id, admin, id);
        ctx.print({ payment_method_id: id, status: 'removed' }, `removed payment method ${id}`);
      }),
    );

  const invoice = program.command('invoice').description('manage invoices');
  invoice
    .command('add')
    .description("add an invoice (needs an admin's token)")
    .requiredOption('--tenant <slug>')
    .requiredOption('--number <number>')
    .requiredOption('--vendor <name>')
    .requiredOption('--amount <amount>')
    .requiredOption('--currency <cur>')
    .option('--status <status>', 'approved|draft', 'approved')
    .option('--due <date>', 'YYYY-MM-DD')
    .action(
      (o: {
        tenant: string;
        number: string;
        vendor: string;
        amount: string;
        currency: string;
        status: string;
        due?: string;
      }) =>
        run(async (ctx) => {
          const amount = money(o.amount, o.currency, '--amount');
          if (o.status !== 'approved' && o.status !== 'draft')
            throw new UsageError(`--status "${o.status}" must be approved or draft`);
          const t = await ctx.tenant(o.tenant);
          const admin = (await ctx.human(t))!;
          const added = await addInvoice(await ctx.db(), t.id, admin, {
            number: o.number,
            vendor: o.vendor,
            amountMinor: amount.amountMinor,
            currency: amount.currency,
            status: o.status,
            dueDate: o.due,
          });
          ctx.print(
            invoiceJson(added),
            `added invoice ${added.number}: ${formatAmount(added.amountMinor, added.currency)} ${added.currency} to ${added.vendorName}`,
          );
        }),
    );
  invoice
    .command('list')
    .requiredOption('--tenant <slug>')
    .action((o: { tenant: string }) =>
      run(async (ctx) => {
        const rows = (await ctx.readTenant(o.tenant, (c) => listInvoices(c))).map(invoiceJson);
        ctx.print(rows, () =>
          table(rows, ['invoice_number', 'vendor', 'amount', 'currency', 'status', 'due_date']),
        );
      }),
    );
}

/** A human's access in --json (snake_case, amounts as decimal strings and minor units). */
function accessJson(u: User) {
  return {
    user_id: u.id,
    email: u.email,
    role: u.role,
    approval_limit:
      u.approvalLimitMinor === null ? null : formatAmount(u.approvalLimitMinor, u.approvalLimitCurrency!),
    approval_limit_minor: u.approvalLimitMinor,
    approval_limit_currency: u.approvalLimitCurrency,
  };
}

/** "approver, limit 5000.00 USD" or "admin, no limit". */
function accessText(u: User): string {
  const limit =
    u.approvalLimitMinor === null
      ? 'no limit'
      : `limit ${formatAmount(u.approvalLimitMinor, u.approvalLimitCurrency!)} ${u.approvalLimitCurrency}`;
  return `${u.role}, ${limit}`;
}
