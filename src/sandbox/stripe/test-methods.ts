/**
 * Stripe's documented test PaymentMethods, as the emulator behaves for them. Transcribed from Stripe's
 * "Testing" and "ACH Direct Debit" pages (the same table as ../shared/reference/stripe/
 * test-payment-methods.json; test/sandbox/stripe-test-methods.test.ts checks every entry against that
 * file, so a drift between the two fails a test).
 *
 * Only what a PaymentIntent confirmed off-session with a stored PaymentMethod can observe is modelled:
 * the card-number-only entries (incorrect_number) and ACH microdeposit verification have no pm_ id
 * and cannot reach this endpoint, so they are not here. Two documented ACH methods are left out on
 * purpose (NOT_MODELLED): Stripe's docs give no error code for them, and inventing one would teach our
 * mapping a code Stripe never sends.
 */

export interface CardDecline {
  /** Stripe's error `code` (card_declined, expired_card, incorrect_cvc, processing_error, ...). */
  code: string;
  /** Stripe's `decline_code`, when the docs give one. */
  declineCode?: string;
  message: string;
}

export type RefundBehaviour = 'immediate' | 'pending_then_succeeded' | 'succeeded_then_failed';

export interface CardMethod {
  type: 'card';
  brand: string;
  last4: string;
  /** Present when confirming fails at once with a card error (402). */
  decline?: CardDecline;
  refund: RefundBehaviour;
}

export interface AchFailure {
  /** The charge's failure_code, which becomes last_payment_error.code on the PaymentIntent. */
  code: string;
  message: string;
}

export interface AchMethod {
  type: 'us_bank_account';
  bankName: string;
  last4: string;
  /**
   * What happens when the debit settles: succeeds, fails with this code, or never leaves processing
   * (Stripe's pm_usBankAccount_processing, for testing cancellation).
   */
  settles: 'succeeded' | 'stays_processing' | AchFailure;
  /** Radar blocks it at confirmation, before anything is debited. */
  blockedAtConfirm?: CardDecline;
}

export type TestMethod = CardMethod | AchMethod;

const declined = 'Your card was declined.';

function card(last4: string, decline?: CardDecline, refund: RefundBehaviour = 'immediate'): CardMethod {
  return decline
    ? { type: 'card', brand: 'visa', last4, decline, refund }
    : { type: 'card', brand: 'visa', last4, refund };
}

function ach(last4: string, settles: AchMethod['settles']): AchMethod {
  return { type: 'us_bank_account', bankName: 'STRIPE TEST BANK', last4, settles };
}

export const TEST_METHODS: Readonly<Record<string, TestMethod>> = {
  pm_card_visa: card('4242'),
  pm_card_mastercard: { type: 'card', brand: 'mastercard', last4: '4444', refund: 'immediate' },
  pm_card_visa_chargeDeclined: card('0002', {
    code: 'card_declined',
    declineCode: 'generic_decline',
    message: declined,
  }),
  pm_card_visa_chargeDeclinedInsufficientFunds: card('9995', {
    code: 'card_declined',
    declineCode: 'insufficient_funds',
    message: 'Your card has insufficient funds.',
  }),
  pm_card_visa_chargeDeclinedLostCard: card('9987', {
    code: 'card_declined',
    declineCode: 'lost_card',
    message: declined,
  }),
  pm_card_visa_chargeDeclinedStolenCard: card('9979', {
    code: 'card_declined',
    declineCode: 'stolen_card',
    message: declined,
  }),
  pm_card_chargeDeclinedExpiredCard: card('0069', {
    code: 'expired_card',
    message: 'Your card has expired.',
  }),
  pm_card_visa_chargeDeclinedExpiredCard: card('0069', {
    code: 'expired_card',
    message: 'Your card has expired.',
  }),
  // The stored method was created with a CVC, so the check runs and fails on every confirmation.
  pm_card_chargeDeclinedIncorrectCvc: card('0127', {
    code: 'incorrect_cvc',
    message: "Your card's security code is incorrect.",
  }),
  pm_card_chargeDeclinedProcessingError: card('0119', {
    code: 'processing_error',
    message: 'An error occurred while processing your card. Try again in a little bit.',
  }),
  pm_card_visa_chargeDeclinedVelocityLimitExceeded: card('6975', {
    code: 'card_declined',
    declineCode: 'card_velocity_exceeded',
    message: declined,
  }),
  // "Attaching to a Customer succeeds, but attempts to charge the customer fail": a generic decline.
  pm_card_chargeCustomerFail: card('0341', {
    code: 'card_declined',
    declineCode: 'generic_decline',
    message: declined,
  }),
  pm_card_chargeDeclined: card('0002', {
    code: 'card_declined',
    declineCode: 'generic_decline',
    message: declined,
  }),
  // Radar's blocks surface as card errors with decline_code fraudulent.
  pm_card_radarBlock: card('0019', { code: 'card_declined', declineCode: 'fraudulent', message: declined }),
  // Off-session with no prior setup: Stripe asks for the customer to authenticate, which we cannot.
  pm_card_authenticationRequired: card('3184', {
    code: 'authentication_required',
    declineCode: 'authentication_required',
    message: 'Your card was declined. This transaction requires authentication.',
  }),
  pm_card_authenticationRequiredChargeDeclinedInsufficientFunds: card('3178', {
    code: 'card_declined',
    declineCode: 'insufficient_funds',
    message: 'Your card has insufficient funds.',
  }),
  // A stored method was set up for future payments, so off-session charges succeed.
  pm_card_authenticationRequiredOnSetup: card('3155'),
  pm_card_cvcCheckFail: card('0101'),
  pm_card_bypassPending: card('0077'),
  pm_card_createDispute: card('0259'),
  pm_card_createDisputeProductNotReceived: card('2685'),
  pm_card_createDisputeInquiry: card('1976'),
  pm_card_pendingRefund: card('7726', undefined, 'pending_then_succeeded'),
  pm_card_refundFail: card('5126', undefined, 'succeeded_then_failed'),

  pm_usBankAccount_success: ach('6789', 'succeeded'),
  pm_usBankAccount_dispute: ach('5559', 'succeeded'),
  pm_usBankAccount_processing: ach('0009', 'stays_processing'),
  pm_usBankAccount_accountClosed: ach('1113', {
    code: 'account_closed',
    message: "The customer's bank account has been closed.",
  }),
  pm_usBankAccount_noAccount: ach('1116', {
    code: 'no_account',
    message: "The customer's bank account could not be located.",
  }),
  pm_usBankAccount_insufficientFunds: ach('2227', {
    code: 'insufficient_funds',
    message: "The customer's account has insufficient funds to cover this payment.",
  }),
  pm_usBankAccount_debitNotAuthorized: ach('5335', {
    code: 'debit_not_authorized',
    message: 'The customer has notified their bank that this payment was unauthorized.',
  }),
  pm_usBankAccount_invalidCurrency: ach('4440', {
    code: 'invalid_currency',
    message: 'The bank was unable to process this payment because of its currency.',
  }),
  pm_usBankAccount_riskLevelHighest: {
    ...ach('4954', 'succeeded'),
    blockedAtConfirm: {
      code: 'card_declined',
      declineCode: 'fraudulent',
      message: 'The payment was blocked by Radar because of a high risk of fraud.',
    },
  },
};

export function findTestMethod(id: string): TestMethod | undefined {
  return Object.hasOwn(TEST_METHODS, id) ? TEST_METHODS[id] : undefined;
}

/** Documented test methods deliberately not emulated, with the reason (checked by the drift test). */
export const NOT_MODELLED: Readonly<Record<string, string>> = {
  pm_usBankAccount_weeklyLimitExceeded: 'the docs give no error code for the weekly volume limit failure',
  pm_usBankAccount_failMicrodeposits: 'microdeposit verification happens at setup, not on a PaymentIntent',
};
