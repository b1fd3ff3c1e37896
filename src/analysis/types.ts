/**
 * The shapes shared by the analysis module: what a caller knows about a failure, and the explanation
 * stored on the alert (the same shape whether Claude or the deterministic fallback wrote it).
 */
import type { Provider, Rail } from '../gateways/types.js';

/** What failed: the alert's subject. */
export type FailureKind = 'payment' | 'refund' | 'scheduled_payment' | 'webhook';

/** One line of the subject's history, oldest first. */
export interface FailureHistoryEntry {
  at: string | Date;
  status: string;
  note?: string;
}

/**
 * Everything a caller may hand over about a failure. It is raw: `sanitizeFailure` decides what of it
 * may leave the process. Amounts are integer minor units, as everywhere.
 */
export interface FailureContext {
  kind: FailureKind;
  /** Our taxonomy code (a GatewayErrorCode) or another stable code of ours. */
  code: string;
  /** The provider's own code: a Stripe decline code, a PayPal issue, a NACHA R-code. */
  providerCode?: string;
  provider?: Provider;
  /** The failure message as the provider or our code wrote it (free text: scrubbed before it leaves). */
  message: string;
  rail?: Rail;
  amountMinor?: number;
  currency?: string;
  invoiceNumber?: string;
  /** Attempts made before this one (0 for a first failure). */
  previousAttempts?: number;
  /** How often an insufficient-funds failure has already been rescheduled. */
  reschedules?: number;
  history?: FailureHistoryEntry[];
}

export type AnalysisSource = 'claude' | 'fallback';

/** The explanation shown to the human on the alert, `get_payment_status` and the approval page. */
export interface Analysis {
  summary: string;
  likely_cause: string;
  next_step: string;
  retry_could_help: boolean;
  source: AnalysisSource;
}
