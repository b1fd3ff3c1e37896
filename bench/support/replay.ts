/**
 * The bare-SQL baseline of one payment: the statements the engine ran for one captured payment (BEGIN
 * and COMMIT included, in the same transactions, on a pool that connects as paygate_app like the
 * engine's), replayed with `pg` for another payment. The ids that differ between payments (invoice,
 * approval, token hash, payment, confirmation number, provider reference) are substituted; the audit
 * rows take the seq and hash the preceding SELECT returned, as appendAudit does, so the chain stays
 * valid and each INSERT really lands. No provider call, no validation, no JSON shaping: only the SQL.
 */
import { createHash } from 'node:crypto';
import type pg from 'pg';
import type { Captured } from './capture.js';

export interface PaymentIdentity {
  invoiceId: string;
  invoiceNumber: string;
  approvalId: string;
  tokenHash: Buffer;
  paymentId: string;
  confirmationNumber: string;
  providerReference: string;
}

const AUDIT_TAIL = 'SELECT seq, hash FROM audit_log';
const AUDIT_INSERT = 'INSERT INTO audit_log';

function substituter(from: PaymentIdentity, to: PaymentIdentity) {
  const pairs: [string, string][] = [
    [from.invoiceId, to.invoiceId],
    [from.invoiceNumber, to.invoiceNumber],
    [from.approvalId, to.approvalId],
    [from.paymentId, to.paymentId],
    [from.confirmationNumber, to.confirmationNumber],
    [from.providerReference, to.providerReference],
  ];
  const swap = (value: unknown): unknown => {
    if (typeof value === 'string') {
      let out = value;
      for (const [a, b] of pairs) if (out.includes(a)) out = out.replaceAll(a, b);
      return out;
    }
    if (Buffer.isBuffer(value)) return value.equals(from.tokenHash) ? to.tokenHash : value;
    if (Array.isArray(value)) return value.map(swap);
    return value;
  };
  return swap;
}

/** Replay `template` (captured for `from`) as the payment `to`. */
export async function replayPayment(
  pool: pg.Pool,
  template: readonly Captured[],
  from: PaymentIdentity,
  to: PaymentIdentity,
): Promise<void> {
  const swap = substituter(from, to);
  let client: pg.PoolClient | undefined;
  let tail: { seq: number; hash: Buffer } | undefined;
  try {
    for (const statement of template) {
      if (statement.text === 'BEGIN') client = await pool.connect();
      if (!client) throw new Error(`bench replay: statement outside a transaction: ${statement.text}`);
      const values = statement.values.map(swap);
      if (statement.text.startsWith(AUDIT_INSERT) && tail) {
        values[1] = tail.seq + 1;
        values[8] = tail.hash;
        values[9] = createHash('sha256').update(tail.hash).update(String(values[7]), 'utf8').digest();
      }
      const result = await client.query(statement.text, values);
      if (statement.text.startsWith(AUDIT_TAIL)) tail = result.rows[0] as typeof tail;
      if (statement.text === 'COMMIT') {
        client.release();
        client = undefined;
      }
    }
  } catch (error) {
    if (client) {
      await client.query('ROLLBACK').catch(() => {});
      client.release();
    }
    throw error;
  }
}

/** Check the replayed statements did the work: each UPDATE that moved a row in the capture moves one here. */
export function describeTemplate(template: readonly Captured[]): {
  statements: number;
  transactions: number;
} {
  return {
    statements: template.filter((s) => s.text !== 'BEGIN' && s.text !== 'COMMIT').length,
    transactions: template.filter((s) => s.text === 'BEGIN').length,
  };
}
