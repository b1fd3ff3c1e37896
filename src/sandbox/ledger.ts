/**
 * What the sandbox emulators really did with money, kept in memory so a test can prove "charged exactly
 * once" by counting, instead of trusting what the client believes happened.
 *
 * Only money-moving events are recorded: a charge the emulator accepted (succeeded, or processing for
 * ACH) and a refund it issued. A decline moves no money and is not an entry; an ACH debit that later
 * fails stays as an entry whose status becomes 'failed', so the history is kept and the totals drop it.
 */

export type LedgerProvider = 'stripe' | 'paypal';
export type LedgerKind = 'charge' | 'refund';

export interface LedgerEntry {
  provider: LedgerProvider;
  kind: LedgerKind;
  /** The emulator's id for the object (pi_..., re_..., a PayPal capture or refund id). */
  id: string;
  /** Our payment id, read from the request's metadata / custom_id; absent if the caller sent none. */
  paymentId?: string;
  /** For a refund: the provider id of what it refunds (pi_..., capture id). */
  refundOf?: string;
  amountMinor: number;
  currency: string;
  /** The provider's own status word (succeeded, processing, failed, pending, COMPLETED, ...). */
  status: string;
  idempotencyKey?: string;
  at: Date;
}

export interface LedgerFilter {
  provider?: LedgerProvider;
  kind?: LedgerKind;
  paymentId?: string;
}

/** Statuses that mean the money did not (or no longer) move; they do not count in the totals. */
const NOT_MOVED = new Set(['failed', 'canceled', 'FAILED', 'DECLINED', 'VOIDED']);

export class Ledger {
  readonly #entries: LedgerEntry[] = [];

  /** Called by emulators when money moves. Returns the stored entry. */
  record(entry: Omit<LedgerEntry, 'at'> & { at?: Date }): LedgerEntry {
    const stored: LedgerEntry = { ...entry, at: entry.at ?? new Date() };
    this.#entries.push(stored);
    return stored;
  }

  /** Called by emulators when a recorded object changes state (ACH settles or returns). */
  updateStatus(provider: LedgerProvider, id: string, status: string): void {
    for (const entry of this.#entries) {
      if (entry.provider === provider && entry.id === id) entry.status = status;
    }
  }

  /** Entries in the order they happened, optionally filtered. Copies: tests cannot alter the record. */
  entries(filter: LedgerFilter = {}): LedgerEntry[] {
    return this.#entries
      .filter(
        (e) =>
          (filter.provider === undefined || e.provider === filter.provider) &&
          (filter.kind === undefined || e.kind === filter.kind) &&
          (filter.paymentId === undefined || e.paymentId === filter.paymentId),
      )
      .map((e) => ({ ...e }));
  }

  charges(paymentId?: string, provider?: LedgerProvider): LedgerEntry[] {
    return this.entries({ kind: 'charge', paymentId, provider });
  }

  refunds(paymentId?: string, provider?: LedgerProvider): LedgerEntry[] {
    return this.entries({ kind: 'refund', paymentId, provider });
  }

  /** Sum in minor units of charges whose money moved (or is moving); failed ACH debits excluded. */
  totalCharged(paymentId?: string, provider?: LedgerProvider): number {
    return sum(this.charges(paymentId, provider));
  }

  totalRefunded(paymentId?: string, provider?: LedgerProvider): number {
    return sum(this.refunds(paymentId, provider));
  }

  clear(): void {
    this.#entries.length = 0;
  }
}

function sum(entries: LedgerEntry[]): number {
  return entries.filter((e) => !NOT_MOVED.has(e.status)).reduce((total, e) => total + e.amountMinor, 0);
}

export function createLedger(): Ledger {
  return new Ledger();
}
