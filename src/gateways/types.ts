/**
 * The one contract every provider implements. Gateways know nothing of tenants (beyond passing the id
 * through as metadata), approvals or SQL: they turn one of our requests into the provider's SDK calls
 * and the provider's answer into one of these normalized results or a GatewayError.
 */

export type Rail = 'stripe' | 'paypal' | 'ach';
export type Provider = 'stripe' | 'paypal' | 'nacha';

/** The one error taxonomy; `provider_code` keeps the provider's own code. */
export type GatewayErrorCode =
  | 'insufficient_funds'
  | 'payment_method_invalid'
  | 'declined'
  | 'rate_limited'
  | 'api_error'
  | 'network_timeout'
  | 'configuration_error';

export interface GatewayFailure {
  code: GatewayErrorCode;
  /** The provider's own code (Stripe decline_code/code, PayPal issue, NACHA R-code). */
  providerCode?: string;
  message: string;
}

/** A provider call that did not produce a payment object: nothing to record but the failure. */
export class GatewayError extends Error {
  override readonly name = 'GatewayError';
  constructor(
    readonly code: GatewayErrorCode,
    message: string,
    readonly provider: Provider,
    readonly details: {
      providerCode?: string;
      requestId?: string;
      /** True for api_error and rate_limited: the same call with the same idempotency key may succeed. */
      retryable?: boolean;
      /** network_timeout: the provider may or may not have acted; ask before anything else. */
      outcomeUnknown?: boolean;
      /** Seconds the provider asked us to wait (Retry-After), when it said. */
      retryAfterSeconds?: number;
    } = {},
  ) {
    super(message);
  }

  get retryable(): boolean {
    return this.details.retryable ?? (this.code === 'api_error' || this.code === 'rate_limited');
  }
}

export interface Payee {
  name: string;
  /** Stripe Connect account: funds go there with transfer_data.destination. */
  stripeAccount?: string;
  paypalEmail?: string;
}

export interface PayRequest {
  /** Our payment id. Every provider write derives its idempotency key from it. */
  paymentId: string;
  tenantId: string;
  amountMinor: number;
  currency: string;
  rail: Rail;
  /** The stored provider token: a Stripe PaymentMethod id, a PayPal vault token, an ACH token. */
  paymentMethodToken: string;
  /** The provider's customer the method is attached to (Stripe requires it off-session), if any. */
  providerCustomerId?: string;
  payee: Payee;
  invoiceNumber: string;
  description: string;
}

export type PaymentStatus = 'succeeded' | 'processing' | 'failed';

export interface PaymentOutcome {
  status: PaymentStatus;
  /** The provider's id for the payment (pi_..., the PayPal capture id, the ACH trace). */
  providerReference: string;
  /** Set when status is 'failed'. */
  failure?: GatewayFailure;
  amountMinor?: number;
  currency?: string;
  /** What the payer's method looked like, safe to show: never a full number. */
  paymentMethodDisplay?: { brand?: string; last4?: string; bankName?: string };
}

export interface RefundRequest {
  /** Our refund id; the provider idempotency key derives from it. */
  refundId: string;
  paymentId: string;
  tenantId: string;
  /** The provider reference recorded on the payment. */
  paymentProviderReference: string;
  amountMinor: number;
  currency: string;
  reason?: string;
}

export type RefundStatus = 'succeeded' | 'pending' | 'failed';

export interface RefundOutcome {
  status: RefundStatus;
  providerReference: string;
  failure?: GatewayFailure;
  /** What the provider says this refund is for, in ISO 4217 minor units, when its answer says. */
  amountMinor?: number;
  currency?: string;
}

/** A verified provider event reduced to what our engine acts on. */
export type WebhookAction =
  | 'payment_succeeded'
  | 'payment_processing'
  | 'payment_failed'
  | 'refund_succeeded'
  | 'refund_failed'
  | 'payment_reversed'
  | 'unsupported';

export interface WebhookEvent {
  provider: 'stripe' | 'paypal';
  eventId: string;
  type: string;
  action: WebhookAction;
  /** Our payment id from the provider object's metadata / custom_id, when present. */
  paymentId?: string;
  /** The provider's payment reference (pi_..., capture id). */
  providerReference?: string;
  refund?: { providerReference: string; amountMinor: number; currency: string };
  /** What the payment object the event is about is for (payment events), in ISO 4217 minor units. */
  amount?: { amountMinor: number; currency: string };
  failure?: GatewayFailure;
  createdAt?: Date;
  payload: unknown;
}

export class WebhookVerificationError extends Error {
  override readonly name = 'WebhookVerificationError';
}

export interface Gateway {
  readonly provider: Provider;
  /** Charge (or submit) once; the idempotency key is derived from request.paymentId. */
  pay(request: PayRequest): Promise<PaymentOutcome>;
  /**
   * Ask the provider what became of our payment, without ever creating a new charge. Without a
   * provider reference (a crash before we recorded it) the gateway finds it by our payment id; a
   * gateway that finds it by metadata (Stripe), which anyone with access to the provider account can
   * write, takes only objects for `amount` when given. Returns null when the provider has no record.
   */
  retrieve(lookup: {
    paymentId: string;
    providerReference?: string;
    amount?: { amountMinor: number; currency: string };
  }): Promise<PaymentOutcome | null>;
  /**
   * For how long after a payment was started a "no record" from `retrieve` without a provider reference
   * shows that the provider never made it. Past this the lookup can miss a payment that was made, so
   * the reconciler must neither send it again nor fail it (which would let the invoice be paid twice).
   * Infinity where the lookup has no such horizon.
   */
  readonly noRecordConclusiveForMs: number;
  refund(request: RefundRequest): Promise<RefundOutcome>;
  /**
   * Ask the provider what became of a refund it already answered for (it gave us `providerReference`),
   * never creating one. A pending refund whose webhook was lost is resolved this way: sending the create
   * again with the same idempotency key only replays the provider's first answer ("pending"). Returns
   * null when the provider has no such refund, or one that is not ours (`refundId`).
   */
  retrieveRefund(lookup: { refundId: string; providerReference: string }): Promise<RefundOutcome | null>;
  /**
   * Why this provider cannot move `amountMinor` of `currency` on `rail` (a currency it does not take, a
   * step it does not allow), or undefined. Asked before a human is asked to approve, so that no one
   * approves a payment or refund the provider would refuse.
   */
  amountProblem(amount: { amountMinor: number; currency: string; rail: Rail }): string | undefined;
}
