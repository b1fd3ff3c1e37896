/**
 * The `nacha` provider of the ACH rail. Nothing is sent when we "pay": the payment is queued for the
 * next NACHA file (`paygate ach export`), and the bank's answer arrives as a return file or as silence
 * through the settlement window. So pay answers `processing`, and retrieve can only say "still waiting".
 */
import { type Gateway, GatewayError } from '../types.js';
import { MAX_ENTRY_MINOR } from './writer.js';

/** The provider reference of a NACHA payment until its file assigns a trace number. */
export function queuedReference(paymentId: string): string {
  return `nacha:${paymentId}`;
}

/**
 * Why a NACHA payment cannot be refunded here: it was an ACH credit pushed to the vendor's bank, and
 * nothing in a NACHA file pulls it back without the vendor's authorization. refund.ts refuses such a
 * refund before an approval is asked with the same words.
 */
export const NACHA_REFUND_REFUSAL =
  'a NACHA payment cannot be refunded through paygate: ask the vendor to return the funds, or originate a reversal with your bank';

export function createNachaGateway(): Gateway {
  return {
    provider: 'nacha',
    async pay(request) {
      return { status: 'processing', providerReference: queuedReference(request.paymentId) };
    },
    async retrieve(lookup) {
      return {
        status: 'processing',
        providerReference: lookup.providerReference ?? queuedReference(lookup.paymentId),
      };
    },
    async refund() {
      throw new GatewayError('configuration_error', NACHA_REFUND_REFUSAL, 'nacha');
    },
    async retrieveRefund() {
      // No NACHA refund is ever made (refund() refuses, and refund.ts refuses before asking anyone).
      return null;
    },
    // Never asked: a NACHA payment always has its queued reference.
    noRecordConclusiveForMs: Number.POSITIVE_INFINITY,
    amountProblem({ amountMinor, currency }) {
      if (currency !== 'USD') return `a NACHA file moves US dollars only, not ${currency}`;
      if (amountMinor > MAX_ENTRY_MINOR)
        return 'a NACHA entry holds at most 99,999,999.99 USD (its amount field is 10 digits of cents)';
      return undefined;
    },
  };
}
