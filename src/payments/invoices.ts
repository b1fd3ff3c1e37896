/**
 * Invoices and their state machine. Every change of status goes through `transitionInvoice`, which only
 * moves along an edge of INVOICE_TRANSITIONS and only from the state the caller saw: an illegal move is
 * an error, never a silent write.
 */
import { appendAudit } from '../audit/log.js';
import type { Db, Queryable } from '../db/pool.js';
import { isUuid, PgError, pgErrorCode } from '../db/pool.js';
import { findVendorByName } from '../directory/counterparties.js';
import { confirmStillAllowed, type User } from '../directory/users.js';
import { RefusedError, UsageError } from '../errors.js';
import { formatAmount } from '../money.js';

export type InvoiceStatus = 'draft' | 'approved' | 'scheduled' | 'processing' | 'paid' | 'void';

/** draft -> approved -> (scheduled ->) processing -> paid; a failed payment sends it back to approved. */
export const INVOICE_TRANSITIONS: Readonly<Record<InvoiceStatus, readonly InvoiceStatus[]>> = {
  draft: ['approved', 'void'],
  // approved/scheduled -> paid: the provider reports money moved for a payment we had recorded failed.
  approved: ['scheduled', 'processing', 'void', 'paid'],
  scheduled: ['approved', 'processing', 'paid'],
  processing: ['paid', 'approved'],
  paid: [],
  void: [],
};

export class IllegalTransitionError extends Error {
  override readonly name = 'IllegalTransitionError';
}

export interface Invoice {
  id: string;
  number: string;
  counterpartyId: string;
  vendorName: string;
  amountMinor: number;
  currency: string;
  status: InvoiceStatus;
  dueDate: string | null;
  createdAt: Date;
}

interface InvoiceRow {
  id: string;
  number: string;
  counterparty_id: string;
  vendor_name: string;
  amount_minor: number;
  currency: string;
  status: InvoiceStatus;
  due_date: string | null;
  created_at: Date;
}

const SELECT_INVOICE = `SELECT i.id, i.number, i.counterparty_id, c.name AS vendor_name, i.amount_minor, i.currency, i.status,
  to_char(i.due_date, 'YYYY-MM-DD') AS due_date, i.created_at
  FROM invoices i JOIN counterparties c ON c.id = i.counterparty_id`;

function toInvoice(r: InvoiceRow): Invoice {
  return {
    id: r.id,
    number: r.number,
    counterpartyId: r.counterparty_id,
    vendorName: r.vendor_name,
    amountMinor: r.amount_minor,
    currency: r.currency.trim(),
    status: r.status,
    dueDate: r.due_date,
    createdAt: r.created_at,
  };
}

export function invoiceJson(invoice: Invoice) {
  return {
    invoice_id: invoice.id,
    invoice_number: invoice.number,
    vendor: invoice.vendorName,
    amount: formatAmount(invoice.amountMinor, invoice.currency),
    amount_minor: invoice.amountMinor,
    currency: invoice.currency,
    status: invoice.status,
    due_date: invoice.dueDate,
  };
}

export const INVOICE_NUMBER = /^[A-Za-z0-9][A-Za-z0-9._/-]{0,63}$/;

export function checkDate(value: string, what = 'date'): string {
  const match = /^(\d{4})-(\d{2})-(\d{2})$/.exec(value);
  const date = match
    ? new Date(Date.UTC(Number(match[1]), Number(match[2]) - 1, Number(match[3])))
    : undefined;
  if (!date || Number.isNaN(date.getTime()) || date.toISOString().slice(0, 10) !== value) {
    throw new UsageError(`${what} "${value}" is not a calendar date in YYYY-MM-DD form`);
  }
  return value;
}

export interface InvoiceInput {
  number: string;
  vendor: string;
  amountMinor: number;
  currency: string;
  status?: 'approved' | 'draft';
  dueDate?: string;
}

export async function addInvoice(
  db: Db,
  tenantId: string,
  admin: User,
  input: InvoiceInput,
): Promise<Invoice> {
  if (!INVOICE_NUMBER.test(input.number)) {
    throw new UsageError(
      `invoice number "${input.number}" is not valid: letters, digits and . _ / -, e.g. INV-2025-001`,
    );
  }
  if (input.dueDate) checkDate(input.dueDate, 'due date');
  if (admin.role !== 'admin')
    throw new RefusedError('admin_required', `${admin.email} is not an admin`, "use an admin's token");
  try {
    return await db.withTenant(tenantId, async (client) => {
      await confirmStillAllowed(client, admin, ['admin']);
      const vendor = await findVendorByName(client, input.vendor);
      if (!vendor)
        throw new RefusedError(
          'vendor_not_found',
          `no vendor "${input.vendor}"`,
          'add it with `paygate vendor add`',
        );
      const { rows } = await client.query<{ id: string }>(
        `INSERT INTO invoices (tenant_id, number, counterparty_id, amount_minor, currency, status, due_date)
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id`,
        [
          tenantId,
          input.number,
          vendor.id,
          input.amountMinor,
          input.currency,
          input.status ?? 'approved',
          input.dueDate ?? null,
        ],
      );
      const id = rows[0]!.id;
      await appendAudit(client, {
        tenantId,
        actorType: 'user',
        actorId: admin.email,
        action: 'invoice.added',
        subjectId: id,
        details: {
          number: input.number,
          vendor: vendor.name,
          amount_minor: input.amountMinor,
          currency: input.currency,
          status: input.status ?? 'approved',
        },
      });
      return (await getInvoice(client, id))!;
    });
  } catch (error) {
    if (pgErrorCode(error) === PgError.uniqueViolation) {
      throw new RefusedError('invoice_exists', `invoice ${input.number} already exists in this tenant`);
    }
    throw error;
  }
}

export async function getInvoice(client: Queryable, id: string): Promise<Invoice | null> {
  const { rows } = await client.query<InvoiceRow>(`${SELECT_INVOICE} WHERE i.id = $1`, [id]);
  return rows[0] ? toInvoice(rows[0]) : null;
}

/** By our id or by the tenant's invoice number; `forUpdate` locks the row for the rest of the transaction. */
export async function findInvoice(
  client: Queryable,
  ref: string,
  options: { forUpdate?: boolean } = {},
): Promise<Invoice | null> {
  const byId = isUuid(ref);
  const { rows } = await client.query<InvoiceRow>(
    `${SELECT_INVOICE} WHERE ${byId ? 'i.id = $1::uuid' : 'i.number = $1'}${options.forUpdate ? ' FOR UPDATE OF i' : ''}`,
    [ref],
  );
  return rows[0] ? toInvoice(rows[0]) : null;
}

export async function listInvoices(
  client: Queryable,
  filter: { status?: InvoiceStatus } = {},
): Promise<Invoice[]> {
  const { rows } = await client.query<InvoiceRow>(
    `${SELECT_INVOICE} WHERE ($1::text IS NULL OR i.status = $1) ORDER BY i.number`,
    [filter.status ?? null],
  );
  return rows.map(toInvoice);
}

/** Move an invoice from `from` to `to`, refusing edges the state machine does not have. */
export async function transitionInvoice(
  client: Queryable,
  invoiceId: string,
  from: InvoiceStatus,
  to: InvoiceStatus,
): Promise<void> {
  await transitionInvoices(client, [invoiceId], from, to);
}

/**
 * Move several invoices in one statement: all of them move, or (one is no longer `from`) none does and
 * the caller's transaction must roll back.
 */
export async function transitionInvoices(
  client: Queryable,
  invoiceIds: string[],
  from: InvoiceStatus,
  to: InvoiceStatus,
): Promise<void> {
  if (!INVOICE_TRANSITIONS[from].includes(to)) {
    throw new IllegalTransitionError(`invoice cannot move from ${from} to ${to}`);
  }
  const { rowCount } = await client.query(
    'UPDATE invoices SET status = $3, updated_at = now() WHERE id = ANY($1::uuid[]) AND status = $2',
    [invoiceIds, from, to],
  );
  if (rowCount !== invoiceIds.length)
    throw new IllegalTransitionError(
      invoiceIds.length === 1
        ? `invoice ${invoiceIds[0]} is no longer ${from}; it cannot move to ${to}`
        : `${invoiceIds.length - (rowCount ?? 0)} of ${invoiceIds.length} invoices are no longer ${from}; none moves to ${to}`,
    );
}
