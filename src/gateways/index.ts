/**
 * The gateway for each provider, built once per process from the configuration: real keys go to the
 * providers; without keys the built-in sandbox serves, through the same SDK code paths.
 */
import type { Config } from '../config.js';
import { createNachaGateway } from './nacha/gateway.js';
import { createPaypalGateway } from './paypal/client.js';
import { createStripeGateway } from './stripe/client.js';
import type { Gateway, Provider } from './types.js';

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
      createPaypalGateway({
        clientId: config.paypal.clientId,
        clientSecret: config.paypal.clientSecret,
        environment: config.paypal.environment === 'live' ? 'production' : 'sandbox',
        sandboxUrl: config.paypal.clientId ? undefined : options.sandbox?.paypalUrl,
        timeoutMs: options.timeoutMs,
      }),
    );
  }
  gateways.set('nacha', createNachaGateway());
  return (provider) => gateways.get(provider);
}
