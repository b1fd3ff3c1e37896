/**
 * Starts the provider emulators on loopback (random ports unless told), sharing one ledger and one
 * fault injector, so a test or `paygate sandbox` gets every provider with one call:
 *
 *   const sandbox = await startSandbox({ stripe: { webhookUrl, webhookSecret } });
 *   sandbox.stripeUrl; sandbox.ledger.charges(paymentId); sandbox.faults.next('stripe', {...});
 *   await sandbox.close();
 *
 * PayPal: `sandbox.paypalUrl` is the base URL for createPaypalGateway({sandboxUrl}); its signing
 * certificate is served from `sandbox.paypal.certUrl` (the webhook verifier's sandboxCertOrigin is
 * `sandbox.paypalUrl`).
 */
import { createFaults, type Faults } from './faults.js';
import { createLedger, type Ledger } from './ledger.js';
import { type PaypalEmulator, startPaypalEmulator } from './paypal/index.js';
import { SANDBOX_STRIPE_SECRET_KEY, type StripeEmulator, startStripeEmulator } from './stripe/server.js';

export type { PaypalEmulator, PaypalWebhookDelivery } from './paypal/index.js';
export { SANDBOX_VAULT_TOKENS } from './paypal/index.js';
export type { StripeEmulator, WebhookDelivery } from './stripe/server.js';
export { SANDBOX_STRIPE_SECRET_KEY } from './stripe/server.js';

export interface PaypalSandboxOptions {
  /** Where to deliver signed PayPal events (the sidecar's POST /webhooks/paypal). */
  webhookUrl?: string;
  /** The webhook id events are signed with (PAYPAL_WEBHOOK_ID); required with webhookUrl. */
  webhookId?: string;
  /** The client credentials the emulator accepts; default the gateway's EMULATOR_CLIENT_ID/SECRET. */
  clientId?: string;
  clientSecret?: string;
  /** Events are delivered this long after the call that caused them, as PayPal does; default 200 ms. */
  webhookDelayMs?: number;
  /** Fixed port (e.g. for `paygate sandbox`); default a random free one. */
  port?: number;
}

export interface StripeSandboxOptions {
  /** Where to deliver signed Stripe events (the sidecar's POST /webhooks/stripe). */
  webhookUrl?: string;
  /** The whsec_ secret events are signed with; required with webhookUrl. */
  webhookSecret?: string;
  /** The API key the emulator accepts; default SANDBOX_STRIPE_SECRET_KEY. */
  secretKey?: string;
  /** ACH debits settle by themselves after this long; absent: only on `sandbox.stripe.settleAch()`. */
  achSettleDelayMs?: number;
  /** Events are delivered this long after the call that caused them, as Stripe does; default 200 ms. */
  webhookDelayMs?: number;
  /** Fixed port (e.g. for `paygate sandbox`); default a random free one. */
  port?: number;
}

export interface SandboxOptions {
  /** Loopback by default; the emulators must never be reachable from elsewhere. */
  host?: string;
  stripe?: StripeSandboxOptions;
  paypal?: PaypalSandboxOptions;
  /** Share a ledger or fault injector across sandboxes; default a fresh one each. */
  ledger?: Ledger;
  faults?: Faults;
}

export interface Sandbox {
  stripeUrl: string;
  paypalUrl: string;
  stripe: StripeEmulator;
  paypal: PaypalEmulator;
  ledger: Ledger;
  faults: Faults;
  close(): Promise<void>;
}

export async function startSandbox(options: SandboxOptions = {}): Promise<Sandbox> {
  const ledger = options.ledger ?? createLedger();
  const faults = options.faults ?? createFaults();
  const host = options.host ?? '127.0.0.1';
  const stripeOptions = options.stripe ?? {};
  if (stripeOptions.webhookUrl && !stripeOptions.webhookSecret) {
    throw new Error('startSandbox: stripe.webhookUrl needs stripe.webhookSecret to sign events');
  }
  const stripe = await startStripeEmulator({
    ledger,
    faults,
    host,
    port: stripeOptions.port,
    secretKey: stripeOptions.secretKey ?? SANDBOX_STRIPE_SECRET_KEY,
    webhook:
      stripeOptions.webhookUrl && stripeOptions.webhookSecret
        ? { url: stripeOptions.webhookUrl, secret: stripeOptions.webhookSecret }
        : undefined,
    achSettleDelayMs: stripeOptions.achSettleDelayMs,
    webhookDelayMs: stripeOptions.webhookDelayMs,
  });

  const paypalOptions = options.paypal ?? {};
  let paypal: PaypalEmulator;
  try {
    if (paypalOptions.webhookUrl && !paypalOptions.webhookId) {
      throw new Error('startSandbox: paypal.webhookUrl needs paypal.webhookId to sign events');
    }
    paypal = await startPaypalEmulator({
      ledger,
      faults,
      host,
      port: paypalOptions.port,
      clientId: paypalOptions.clientId,
      clientSecret: paypalOptions.clientSecret,
      webhook:
        paypalOptions.webhookUrl && paypalOptions.webhookId
          ? { url: paypalOptions.webhookUrl, webhookId: paypalOptions.webhookId }
          : undefined,
      webhookDelayMs: paypalOptions.webhookDelayMs,
    });
  } catch (error) {
    await stripe.close();
    throw error;
  }

  return {
    stripeUrl: stripe.url,
    paypalUrl: paypal.url,
    stripe,
    paypal,
    ledger,
    faults,
    close: async () => {
      await Promise.all([stripe.close(), paypal.close()]);
    },
  };
}
