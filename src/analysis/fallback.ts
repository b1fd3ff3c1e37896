/**
 * The deterministic explanation per error code: what a human reads when there is no Anthropic key, when
 * Claude fails or is slow, and before Claude's answer arrives. It restates paygate's own rules for each
 * code (design: "On failure"), so it is never wrong about what paygate will do next.
 */
import type { GatewayErrorCode } from '../gateways/types.js';
import type { Analysis, FailureKind } from './types.js';

export interface FallbackDetails {
  kind?: FailureKind;
  /** Attempts made before the one that failed. */
  previousAttempts?: number;
}

/** api_error is retried this many times in all, with the same idempotency key (design: "On failure"). */
const API_ERROR_ATTEMPTS = 3;

const TAXONOMY: ReadonlySet<string> = new Set<GatewayErrorCode>([
  'insufficient_funds',
  'payment_method_invalid',
  'declined',
  'rate_limited',
  'api_error',
  'network_timeout',
  'configuration_error',
]);

export function isTaxonomyCode(code: string): code is GatewayErrorCode {
  return TAXONOMY.has(code);
}

type Explanation = Omit<Analysis, 'source'>;

function explainTaxonomy(code: GatewayErrorCode, details: FallbackDetails): Explanation {
  const refund = details.kind === 'refund';
  switch (code) {
    case 'insufficient_funds':
      return refund
        ? {
            summary: 'The refund failed because the balance it is paid from was too low.',
            likely_cause: 'The account balance at the provider does not cover the refund amount right now.',
            next_step:
              'Add funds to the provider balance (or wait for pending payouts to settle), then request the refund again.',
            retry_could_help: true,
          }
        : {
            summary: "The payment failed because the payer's account did not have enough funds.",
            likely_cause:
              'The available balance or credit limit of the funding account is below the amount (ACH return R01 or R09).',
            next_step:
              "paygate reschedules the payment automatically up to the tenant's limit. Make sure funds are available before the next attempt, or pay with another method.",
            retry_could_help: true,
          };
    case 'payment_method_invalid':
      return {
        summary: 'The payment method on file cannot be used.',
        likely_cause:
          'The card or bank account is expired, closed or incorrect, or its token was revoked at the provider (ACH returns R02, R03, R04).',
        next_step:
          'Ask for an updated payment method, add it with `paygate payment-method add`, then request a new approval for the payment.',
        retry_could_help: false,
      };
    case 'declined':
      return {
        summary: refund
          ? 'The provider declined the refund.'
          : 'The provider or the issuing bank declined the payment.',
        likely_cause:
          'An issuer or provider rule refused it (risk checks, limits, restrictions on the account); providers often do not say which.',
        next_step:
          'Review it manually: confirm the payee and the amount, and contact the bank or provider if the decline is unexpected. Do not retry the same method unchanged.',
        retry_could_help: false,
      };
    case 'rate_limited':
      return {
        summary: 'The provider asked paygate to slow down.',
        likely_cause: "Too many requests reached the provider's API in a short time.",
        next_step:
          'Nothing to do now: paygate retries with backoff under the same idempotency key, so it cannot pay twice. If this recurs, spread scheduled payments out.',
        retry_could_help: true,
      };
    case 'api_error': {
      const exhausted = (details.previousAttempts ?? 0) + 1 >= API_ERROR_ATTEMPTS;
      return {
        summary: "The provider's API returned an error.",
        likely_cause: 'A temporary fault on the provider side, most often resolved within minutes.',
        next_step: exhausted
          ? `All ${API_ERROR_ATTEMPTS} automatic attempts failed. Check the provider's status page, then request the payment again later; the same idempotency key prevents a double payment.`
          : `paygate retries up to ${API_ERROR_ATTEMPTS} attempts with backoff and the same idempotency key; no action is needed unless every attempt fails.`,
        retry_could_help: true,
      };
    }
    case 'network_timeout':
      return {
        summary: 'The provider did not answer in time, so the outcome is unknown.',
        likely_cause: 'A network fault or a slow provider: the money may or may not have moved.',
        next_step:
          'Do not pay again. paygate asks the provider for the outcome before any retry; check the status once reconciliation has run.',
        retry_could_help: false,
      };
    case 'configuration_error':
      return {
        summary: "paygate's connection to the provider is misconfigured.",
        likely_cause:
          'A missing or wrong API key, a disabled rail or account, or a setting the provider rejected.',
        next_step:
          "An administrator should check the provider keys and the tenant's rail configuration; retrying fails until that is fixed.",
        retry_could_help: false,
      };
    default: {
      const unreachable: never = code;
      throw new Error(`unhandled error code ${String(unreachable)}`);
    }
  }
}

const UNKNOWN: Explanation = {
  summary: 'The operation failed for a reason paygate does not classify.',
  likely_cause: "The provider returned an error outside paygate's known categories.",
  next_step: "Review it manually: read the provider's message and the history before trying again.",
  retry_could_help: false,
};

/** The deterministic explanation of a failure code, synchronously: for callers that need an answer now. */
export function explainFailure(code: string, details: FallbackDetails = {}): Analysis {
  const explanation = isTaxonomyCode(code) ? explainTaxonomy(code, details) : UNKNOWN;
  return { ...explanation, source: 'fallback' };
}
