/**
 * The gateway for each provider, built once per process from the configuration: real keys go to the
 * providers; without keys the built-in sandbox serves, through the same SDK code paths.
 */
import type { Config } from '../config.js';
import { createNachaGateway } from './nacha/gateway.js';
import { createPaypalGateway } from './paypal/client.js';
import { withRetry } from './retry.js';
import { createStripeGateway } from './stripe/client.js';
import type { Gateway, Provider } from './types.js';

/** Our retry policy around a gateway whose client makes single attempts: same request, same keys. */
function withRetryPolicy(gateway: Gateway, sleep?: (ms: number) => Promise<void>): Gateway {
  return {
    provider: gateway.provider,
    pay: (request) =>
      withRetry(() => gateway.pay(request), {
        sleep,
        checkOutcome: () =>
          gateway.retrieve({
            paymentId: request.paymentId,
            amount: { amountMinor: request.amountMinor, currency: request.currency },
          }),
      }),
    retrieve: (lookup) =>
      withRetry(() => gateway.retrieve(lookup), { sleep, checkOutcome: async () => null }),
    refund: (request) => withRetry(() => gateway.refund(request), { sleep }),
    retrieveRefund: (lookup) =>
      withRetry(() => gateway.retrieveRefund(lookup), { sleep, checkOutcome: async () => null }),
    noRecordConclusiveForMs: gateway.noRecordConclusiveForMs,
    amountProblem: (amount) => gateway.amountProblem(amount),
  };
}

export interface SandboxEndpoints {
  stripeUrl?: string;
  paypalUrl?: string;
}

export interface GatewayOptions {
  /** Where the sandbox emulators listen, when they serve. */
  sandbox?: SandboxEndpoints;
  /** Injectable backoff sleep for the retry policy (tests). */
  sleep?: (ms: number) => Promise<void>;
  timeoutMs?: number;
}

export type GatewayLookup = (provider: Provider) => Gateway | undefined;

export function createGateways(
  config: Pick<Config, 'stripe' | 'paypal'>,
  options: GatewayOptions = {},
): GatewayLookup {
  const gateways = new Map<Provider, Gateway>();
  if (config.stripe.secretKey || options.sandbox?.stripeUrl) {
    gateways.set(
      'stripe',
      createStripeGateway({
        secretKey: config.stripe.secretKey,
        sandboxUrl: config.stripe.secretKey ? undefined : options.sandbox?.stripeUrl,
        timeoutMs: options.timeoutMs,
        sleep: options.sleep,
      }),
    );
  }
  if (config.paypal.clientId || options.sandbox?.paypalUrl) {
    gateways.set(
      'paypal',
      // The PayPal client makes single attempts; our one retry policy wraps it here, as Stripe's
      // client applies it inside.
      withRetryPolicy(
        createPaypalGateway({
          clientId: config.paypal.clientId,
          clientSecret: config.paypal.clientSecret,
          environment: config.paypal.environment,
          sandboxUrl: config.paypal.clientId ? undefined : options.sandbox?.paypalUrl,
          timeoutMs: options.timeoutMs,
        }),
        options.sleep,
      ),
    );
  }
  gateways.set('nacha', createNachaGateway());
  return (provider) => gateways.get(provider);
}
