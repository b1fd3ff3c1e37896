/**
 * The tenant's stored payment methods: provider tokens plus what is safe to show (brand, last4, bank
 * name). A raw card number is refused wherever it appears, before it reaches the database or a log.
 */
import { appendAudit } from '../audit/log.js';
import type { Db, Queryable } from '../db/pool.js';
import { PgError, pgErrorCode } from '../db/pool.js';
import { RefusedError, UsageError } from '../errors.js';
import type { Provider, Rail } from '../gateways/types.js';
import { containsCardNumber } from './card-numbers.js';
import { confirmStillAllowed, type User } from './users.js';

export const RAILS: readonly Rail[] = ['stripe', 'paypal', 'ach'];

export interface PaymentMethod {
  id: string;
  rail: Rail;
  provider: Provider;
  label: string | null;
  brand: string | null;
  last4: string | null;
  bankName: string | null;
  createdAt: Date;
}

export interface PaymentMethodInput {
  rail: Rail;
  token: string;
  provider?: Provider;
  label?: string;
  brand?: string;
  last4?: string;
  bankName?: string;
  /** Stripe: the Customer (cus_...) the PaymentMethod is attached to, required off-session. */
  customer?: string;
}

export function checkRail(rail: string): Rail {
  if (!(RAILS as readonly string[]).includes(rail))
    throw new UsageError(`rail "${rail}" is not one of ${RAILS.join(', ')}`);
  return rail as Rail;
}

const CARD_NUMBER_REFUSAL =
  'that looks like a card number: paygate never stores card numbers. Save the card with the provider ' +
  '(Stripe: a PaymentMethod, pm_...) and give its token instead';

/** Which provider carries a rail for a given token: ACH through Stripe (pm_/ba_ tokens) or NACHA files. */
export function providerFor(rail: Rail, token: string, explicit?: Provider): Provider {
  if (rail === 'stripe' || rail === 'paypal') {
    if (explicit && explicit !== rail)
      throw new UsageError(`the ${rail} rail is carried by ${rail}, not ${explicit}`);
    return rail;
  }
  if (explicit === 'stripe' || explicit === 'nacha') return explicit;
  if (explicit) throw new UsageError(`ACH is carried by stripe or nacha, not ${explicit}`);
  return /^(pm|ba|src)_/.test(token) ? 'stripe' : 'nacha';
}

export function checkPaymentMethodInput(input: PaymentMethodInput): void {
  for (const value of [
    input.token,
    input.label ?? '',
    input.brand ?? '',
    input.bankName ?? '',
    input.customer ?? '',
  ]) {
    if (containsCardNumber(value)) throw new UsageError(CARD_NUMBER_REFUSAL, 'card_number_refused');
  }
  if (!/^[A-Za-z0-9_:.-]{3,255}$/.test(input.token)) {
    throw new UsageError('the provider token must be 3-255 letters, digits, _ : . or -, e.g. pm_card_visa');
  }
  // Shown to approvers on every request paid with the method: a name, not a document.
  for (const [flag, value] of [
    ['label', input.label],
    ['brand', input.brand],
    ['bank-name', input.bankName],
  ] as const) {
    if (value !== undefined && (!value.trim() || value.length > 200))
      throw new UsageError(`--${flag} must be 1-200 characters`);
  }
  if (input.last4 !== undefined && !/^[0-9]{4}$/.test(input.last4))
    throw new UsageError('last4 must be exactly 4 digits');
  if (input.customer !== undefined && !/^cus_[A-Za-z0-9]+$/.test(input.customer)) {
    throw new UsageError(`"${input.customer}" is not a Stripe customer id: it looks like cus_1A2b3C`);
  }
}

interface Row {
  id: string;
  rail: Rail;
  provider: Provider;
  label: string | null;
  brand: string | null;
  last4: string | null;
  bank_name: string | null;
  created_at: Date;
}

const COLUMNS = 'id, rail, provider, label, brand, last4, bank_name, created_at';

function toPaymentMethod(r: Row): PaymentMethod {
  return {
    id: r.id,
    rail: r.rail,
    provider: r.provider,
    label: r.label,
    brand: r.brand,
    last4: r.last4,
    bankName: r.bank_name,
    createdAt: r.created_at,
  };
}

export async function addPaymentMethod(
  db: Db,
  tenantId: string,
  admin: User,
  input: PaymentMethodInput,
): Promise<PaymentMethod> {
  checkPaymentMethodInput(input);
  if (admin.role !== 'admin')
    throw new RefusedError('admin_required', `${admin.email} is not an admin`, "use an admin's token");
  const provider = providerFor(input.rail, input.token, input.provider);
  try {
    return await db.withTenant(tenantId, async (client) => {
      await confirmStillAllowed(client, admin, ['admin']);
      const { rows } = await client.query<Row>(
        `INSERT INTO payment_methods (tenant_id, rail, provider, provider_token, label, brand, last4, bank_name, provider_customer)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING ${COLUMNS}`,
        [
          tenantId,
          input.rail,
          provider,
          input.token,
          input.label ?? null,
          input.brand ?? null,
          input.last4 ?? null,
          input.bankName ?? null,
          input.customer ?? null,
        ],
      );
      const method = toPaymentMethod(rows[0]!);
      await appendAudit(client, {
        tenantId,
        actorType: 'user',
        actorId: admin.email,
        action: 'payment_method.added',
        subjectId: method.id,
        details: { rail: method.rail, provider, label: method.label, last4: method.last4 },
      });
      return method;
    });
  } catch (error) {
    if (pgErrorCode(error) === PgError.uniqueViolation) {
      throw new RefusedError(
        'payment_method_exists',
        'that token is already an active payment method of this tenant',
      );
    }
    throw error;
  }
}

/** A payment method as the tools and the CLI's --json show it: provider token never, last4 and brand only. */
export function paymentMethodJson(m: PaymentMethod) {
  return {
    payment_method_id: m.id,
    rail: m.rail,
    provider: m.provider,
    label: m.label,
    brand: m.brand,
    last4: m.last4,
    bank_name: m.bankName,
  };
}

export async function listPaymentMethods(client: Queryable): Promise<PaymentMethod[]> {
  const { rows } = await client.query<Row>(
    `SELECT ${COLUMNS} FROM payment_methods WHERE status = 'active' ORDER BY created_at`,
  );
  return rows.map(toPaymentMethod);
}

/** The active method for a rail (the newest), with its token, for the engine's provider call. */
export async function activeMethodForRail(
  client: Queryable,
  rail: Rail,
): Promise<(PaymentMethod & { token: string }) | null> {
  const { rows } = await client.query<Row & { provider_token: string }>(
    `SELECT ${COLUMNS}, provider_token FROM payment_methods WHERE status = 'active' AND rail = $1 ORDER BY created_at DESC LIMIT 1`,
    [rail],
  );
  const r = rows[0];
  return r ? { ...toPaymentMethod(r), token: r.provider_token } : null;
}

export async function removePaymentMethod(db: Db, tenantId: string, admin: User, id: string): Promise<void> {
  if (admin.role !== 'admin')
    throw new RefusedError('admin_required', `${admin.email} is not an admin`, "use an admin's token");
  if (!/^[0-9a-f-]{36}$/i.test(id)) throw new UsageError(`"${id}" is not a payment method id`);
  await db.withTenant(tenantId, async (client) => {
    await confirmStillAllowed(client, admin, ['admin']);
    const { rowCount } = await client.query(
      "UPDATE payment_methods SET status = 'removed', removed_at = now() WHERE id = $1 AND status = 'active'",
      [id],
    );
    if (!rowCount) throw new RefusedError('payment_method_not_found', `no active payment method ${id}`);
    await appendAudit(client, {
      tenantId,
      actorType: 'user',
      actorId: admin.email,
      action: 'payment_method.removed',
      subjectId: id,
    });
  });
}
