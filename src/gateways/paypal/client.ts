/**
 * PayPal through its official SDK (@paypal/paypal-server-sdk): Orders v2 create + capture, get order,
 * refund of a capture. Every write carries a PayPal-Request-Id derived from our ids (mapping.ts), the
 * SDK's own retries are off (our one policy lives in ../retry.ts), and all interpretation of what
 * PayPal said happens in mapping.ts.
 */
import {
  type ApiResponse,
  Client,
  Environment,
  type Order,
  OrdersController,
  PaymentsController,
  type Refund,
} from '@paypal/paypal-server-sdk';
import axios, { type AxiosAdapter, type AxiosResponse, type InternalAxiosRequestConfig } from 'axios';
import type { Gateway, PaymentOutcome, PayRequest, RefundOutcome, RefundRequest } from '../types.js';
import { GatewayError } from '../types.js';
import { EMULATOR_CLIENT_ID, EMULATOR_CLIENT_SECRET } from './constants.js';
import {
  buildLookupOrderRequest,
  buildOrderRequest,
  buildRefundRequest,
  captureToOutcome,
  LOOKUP_NOT_FOUND_ISSUE,
  mapPaypalError,
  orderToOutcome,
  paypalAmountProblem,
  paypalRequestIds,
  refundToOutcome,
} from './mapping.js';

export { EMULATOR_CLIENT_ID, EMULATOR_CLIENT_SECRET } from './constants.js';

/**
 * 30 s: PayPal's own guidance for Orders calls is to allow tens of seconds; past that we prefer to
 * report "outcome unknown" and ask, rather than hold a worker. The SDK's default is 0 (no timeout at
 * all), which would let a hung connection hold a payment forever.
 */
export const DEFAULT_TIMEOUT_MS = 30_000;

export interface PaypalGatewayOptions {
  /** Absent with `sandboxUrl`: the emulator's built-in credentials. Required otherwise. */
  clientId?: string;
  clientSecret?: string;
  /** Which PayPal: 'sandbox' (api-m.sandbox.paypal.com) or 'live' (api-m.paypal.com); as config.paypal.environment. */
  environment: 'sandbox' | 'live';
  /**
   * Base URL of the local emulator (http://127.0.0.1:PORT). When set, every SDK request is sent there
   * instead of PayPal. Only loopback is accepted: credentials must never be redirected elsewhere.
   */
  sandboxUrl?: string;
  timeoutMs?: number;
}

export interface PaypalGateway extends Gateway {
  readonly provider: 'paypal';
}

/**
 * The SDK has no base-URL option; its axios instance takes overrides through
 * `unstable_httpClientOptions`, so the redirect is an axios adapter that rewrites each request's
 * origin to the emulator's and hands it to axios's own http adapter. This is the only place it happens.
 */
function loopbackAdapter(sandboxUrl: string): AxiosAdapter {
  const target = new URL(sandboxUrl);
  const loopback = ['127.0.0.1', 'localhost', '[::1]'];
  if (target.protocol !== 'http:' || !loopback.includes(target.hostname)) {
    throw new GatewayError(
      'configuration_error',
      `sandboxUrl must be http on loopback (http://127.0.0.1:PORT), got "${sandboxUrl}"`,
      'paypal',
      { retryable: false },
    );
  }
  const http = axios.getAdapter('http');
  return (config: InternalAxiosRequestConfig): Promise<AxiosResponse> => {
    const original = new URL(config.url ?? '/', 'https://api-m.paypal.com');
    const redirected = new URL(`${original.pathname}${original.search}`, target);
    return http({ ...config, baseURL: undefined, url: redirected.toString() });
  };
}

export function createPaypalGateway(options: PaypalGatewayOptions): PaypalGateway {
  const emulated = options.sandboxUrl !== undefined;
  const clientId = options.clientId ?? (emulated ? EMULATOR_CLIENT_ID : undefined);
  const clientSecret = options.clientSecret ?? (emulated ? EMULATOR_CLIENT_SECRET : undefined);
  if (!clientId || !clientSecret) {
    throw new GatewayError(
      'configuration_error',
      'PayPal needs PAYPAL_CLIENT_ID and PAYPAL_CLIENT_SECRET (or the local sandbox)',
      'paypal',
      { retryable: false },
    );
  }
  const timeout = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const client = new Client({
    clientCredentialsAuthCredentials: { oAuthClientId: clientId, oAuthClientSecret: clientSecret },
    environment: options.environment === 'live' ? Environment.Production : Environment.Sandbox,
    timeout,
    // No SDK retries: a retry of a write must go through our policy, which asks before it repeats.
    httpClientOptions: {
      timeout,
      retryConfig: { maxNumberOfRetries: 0, retryOnTimeout: false, httpMethodsToRetry: [] },
    },
    ...(options.sandboxUrl
      ? { unstable_httpClientOptions: { adapter: loopbackAdapter(options.sandboxUrl) } }
      : {}),
  });
  const orders = new OrdersController(client);
  const payments = new PaymentsController(client);

  async function call<T>(operation: string, run: () => Promise<ApiResponse<T>>): Promise<T> {
    try {
      return (await run()).result;
    } catch (error) {
      throw mapPaypalError(error, operation);
    }
  }

  async function captureOrder(orderId: string, paymentId: string): Promise<Order> {
    return call('capture order', () =>
      orders.captureOrder({
        id: orderId,
        paypalRequestId: paypalRequestIds.captureOrder(paymentId),
        prefer: 'return=representation',
      }),
    );
  }

  return {
    provider: 'paypal',

    async pay(request: PayRequest): Promise<PaymentOutcome> {
      const body = buildOrderRequest(request);
      const order = await call('create order', () =>
        orders.createOrder({
          body,
          paypalRequestId: paypalRequestIds.createOrder(request.paymentId),
          prefer: 'return=representation',
        }),
      );
      // With some vaulted sources PayPal completes the order at create; then the capture is there.
      const already = orderToOutcome(order);
      if (already) return already;
      if (!order.id) {
        // Nothing was captured yet, and the same key replays the same order: safe to retry.
        throw new GatewayError('api_error', 'PayPal create order answered without an order id', 'paypal', {
          retryable: true,
        });
      }
      const captured = await captureOrder(order.id, request.paymentId);
      const outcome = orderToOutcome(captured);
      if (!outcome) {
        throw new GatewayError(
          'api_error',
          `PayPal capture of order ${order.id} returned no capture`,
          'paypal',
          {
            retryable: false,
          },
        );
      }
      return outcome;
    },

    async retrieve({ paymentId, providerReference }): Promise<PaymentOutcome | null> {
      // Find the order by our payment id alone: replaying the create with its PayPal-Request-Id returns
      // the original order; for a key PayPal never saw, the lookup body is refused and nothing is made.
      // Never a capture: the capture key is only ever sent by pay().
      let found: Order;
      try {
        found = (
          await orders.createOrder({
            body: buildLookupOrderRequest(paymentId),
            paypalRequestId: paypalRequestIds.createOrder(paymentId),
          })
        ).result;
      } catch (error) {
        const mapped = mapPaypalError(error, 'find order');
        if (mapped.details.providerCode === LOOKUP_NOT_FOUND_ISSUE) return null;
        throw mapped;
      }
      if (!found.id) return null;
      let order: Order;
      try {
        order = (await orders.getOrder({ id: found.id })).result;
      } catch (error) {
        const mapped = mapPaypalError(error, 'get order');
        if (mapped.details.providerCode === 'RESOURCE_NOT_FOUND') return null;
        throw mapped;
      }
      if (order.purchaseUnits?.[0]?.customId !== paymentId) return null;
      if (providerReference) {
        const captures = order.purchaseUnits?.[0]?.payments?.captures ?? [];
        const match = captures.find((c) => c.id === providerReference);
        return match ? captureToOutcome(match) : null;
      }
      return orderToOutcome(order);
    },

    async refund(request: RefundRequest): Promise<RefundOutcome> {
      const refund = await call('refund capture', () =>
        payments.refundCapturedPayment({
          captureId: request.paymentProviderReference,
          paypalRequestId: paypalRequestIds.refund(request.refundId),
          prefer: 'return=representation',
          body: buildRefundRequest(request),
        }),
      );
      return refundToOutcome(refund);
    },

    async retrieveRefund({ refundId, providerReference }): Promise<RefundOutcome | null> {
      let refund: Refund;
      try {
        refund = (await payments.getRefund({ refundId: providerReference })).result;
      } catch (error) {
        const mapped = mapPaypalError(error, 'get refund');
        // PayPal answers an unknown id with 404 RESOURCE_NOT_FOUND, issue INVALID_RESOURCE_ID.
        const code = mapped.details.providerCode;
        if (code === 'INVALID_RESOURCE_ID' || code === 'RESOURCE_NOT_FOUND') return null;
        throw mapped;
      }
      // Our refunds carry our refund id as custom_id (buildRefundRequest): another one is not ours.
      if (refund.customId !== undefined && refund.customId !== refundId) return null;
      return refundToOutcome(refund);
    },

    // retrieve finds an order only by replaying its create's PayPal-Request-Id, which PayPal keeps for
    // 6 hours (the Orders v2 reference, POST /v2/checkout/orders); an hour's margin for the time between
    // phase 1 and the request, and the call's own retries.
    noRecordConclusiveForMs: 5 * 3600_000,
    amountProblem: paypalAmountProblem,
  };
}
