/** Vendors (and customers): who gets paid, and where: a Stripe account, a PayPal email, a bank account. */
import { appendAudit } from '../audit/log.js';
import type { Db, Queryable } from '../db/pool.js';
import { PgError, pgErrorCode } from '../db/pool.js';
import { RefusedError, UsageError } from '../errors.js';
import type { Sealer } from './encryption.js';
import { confirmStillAllowed, type User } from './users.js';

export interface Counterparty {
  id: string;
  name: string;
  stripeAccount: string | null;
  paypalEmail: string | null;
  achRoutingNumber: string | null;
  achAccountLast4: string | null;
}

/** ABA routing numbers carry a check digit: 3·(d1+d4+d7) + 7·(d2+d5+d8) + (d3+d6+d9) ≡ 0 (mod 10). */
export function validRoutingNumber(routing: string): boolean {
  if (!/^[0-9]{9}$/.test(routing)) return false;
  const d = [...routing].map(Number);
  const sum = 3 * (d[0]! + d[3]! + d[6]!) + 7 * (d[1]! + d[4]! + d[7]!) + (d[2]! + d[5]! + d[8]!);
  return sum % 10 === 0;
}

export interface VendorInput {
  name: string;
  stripeAccount?: string;
  paypalEmail?: string;
  bank?: { routingNumber: string; accountNumber: string };
}

export function checkVendorInput(input: VendorInput): void {
  if (!input.name.trim() || input.name.length > 200)
    throw new UsageError('vendor name must be 1-200 characters');
  if (input.stripeAccount !== undefined && !/^acct_[A-Za-z0-9]+$/.test(input.stripeAccount)) {
    throw new UsageError(`"${input.stripeAccount}" is not a Stripe account id: it looks like acct_1A2b3C`);
  }
  if (input.paypalEmail !== undefined && !/^[^@\s]+@[^@\s]+\.[^@\s]+$/.test(input.paypalEmail)) {
    throw new UsageError(`"${input.paypalEmail}" is not an email address`);
  }
  if (input.bank) {
    if (!validRoutingNumber(input.bank.routingNumber)) {
      throw new UsageError(
        `routing number "${input.bank.routingNumber}" is not a valid 9-digit ABA routing number (check digit)`,
      );
    }
    if (!/^[0-9]{4,17}$/.test(input.bank.accountNumber)) {
      throw new UsageError('the bank account number must be 4 to 17 digits');
    }
  }
}

export async function addVendor(
  db: Db,
  tenantId: string,
  admin: User,
  sealer: Sealer,
  input: VendorInput,
): Promise<Counterparty> {
  checkVendorInput(input);
  if (admin.role !== 'admin')
    throw new RefusedError('admin_required', `${admin.email} is not an admin`, "use an admin's token");
  try {
    return await db.withTenant(tenantId, async (client) => {
      await confirmStillAllowed(client, admin, ['admin']);
      const { rows } = await client.query<{ id: string }>(
        `INSERT INTO counterparties (tenant_id, kind, name, stripe_account, paypal_email, ach_routing_number,
                                     ach_account_ciphertext, ach_account_last4)
         VALUES ($1, 'vendor', $2, $3, $4, $5, $6, $7) RETURNING id`,
        [
          tenantId,
          input.name,
          input.stripeAccount ?? null,
          input.paypalEmail ?? null,
          input.bank?.routingNumber ?? null,
          input.bank ? sealer.seal(input.bank.accountNumber) : null,
          input.bank ? input.bank.accountNumber.slice(-4) : null,
        ],
      );
      const id = rows[0]!.id;
      await appendAudit(client, {
        tenantId,
        actorType: 'user',
        actorId: admin.email,
        action: 'vendor.added',
        subjectId: id,
        details: {
          name: input.name,
          stripe_account: input.stripeAccount ?? null,
          paypal: input.paypalEmail !== undefined,
          bank_account_last4: input.bank?.accountNumber.slice(-4) ?? null,
        },
      });
      return {
        id,
        name: input.name,
        stripeAccount: input.stripeAccount ?? null,
        paypalEmail: input.paypalEmail ?? null,
        achRoutingNumber: input.bank?.routingNumber ?? null,
        achAccountLast4: input.bank?.accountNumber.slice(-4) ?? null,
      };
    });
  } catch (error) {
    if (pgErrorCode(error) === PgError.uniqueViolation)
      throw new RefusedError('vendor_exists', `vendor "${input.name}" already exists`);
    throw error;
  }
}

interface CounterpartyRow {
  id: string;
  name: string;
  stripe_account: string | null;
  paypal_email: string | null;
  ach_routing_number: string | null;
  ach_account_last4: string | null;
}

const COLUMNS = 'id, name, stripe_account, paypal_email, ach_routing_number, ach_account_last4';

function toCounterparty(r: CounterpartyRow): Counterparty {
  return {
    id: r.id,
    name: r.name,
    stripeAccount: r.stripe_account,
    paypalEmail: r.paypal_email,
    achRoutingNumber: r.ach_routing_number,
    achAccountLast4: r.ach_account_last4,
  };
}

export async function findVendorByName(client: Queryable, name: string): Promise<Counterparty | null> {
  const { rows } = await client.query<CounterpartyRow>(
    `SELECT ${COLUMNS} FROM counterparties WHERE kind = 'vendor' AND name = $1`,
    [name],
  );
  return rows[0] ? toCounterparty(rows[0]) : null;
}

export async function listVendors(db: Db, tenantId: string): Promise<Counterparty[]> {
  const { rows } = await db.withTenant(tenantId, (client) =>
    client.query<CounterpartyRow>(
      `SELECT ${COLUMNS} FROM counterparties WHERE kind = 'vendor' ORDER BY name`,
    ),
  );
  return rows.map(toCounterparty);
}

/** The vendor's full bank account number, for writing a NACHA file; nothing else should need it. */
export async function openBankAccount(
  client: Queryable,
  sealer: Sealer,
  counterpartyId: string,
): Promise<string | null> {
  const { rows } = await client.query<{ ach_account_ciphertext: Buffer | null }>(
    'SELECT ach_account_ciphertext FROM counterparties WHERE id = $1',
    [counterpartyId],
  );
  const sealed = rows[0]?.ach_account_ciphertext;
  return sealed ? sealer.open(sealed) : null;
}
