/**
 * Starts the provider emulators on loopback (random ports unless told), sharing one ledger and one
 * fault injector, so a test or `paygate sandbox` gets every provider with one call:
 *
 *   const sandbox = await startSandbox({ stripe: { webhookUrl, webhookSecret } });
 *   sandbox.stripeUrl; sandbox.ledger.charges(paymentId); sandbox.faults.next('stripe', {...});
 *   await sandbox.close();
 *
 * PayPal: `src/sandbox/paypal/` adds its emulator; wire it in at the marked place below (an option
 * block `paypal`, a started emulator, `paypalUrl` and `paypal` on the result, and its close()).
 */
import { createFaults, type Faults } from './faults.js';
import { createLedger, type Ledger } from './ledger.js';
import { SANDBOX_STRIPE_SECRET_KEY, type StripeEmulator, startStripeEmulator } from './stripe/server.js';

export type { StripeEmulator, WebhookDelivery } from './stripe/server.js';
export { SANDBOX_STRIPE_SECRET_KEY } from './stripe/server.js';

export interface StripeSandboxOptions {
  /** Where to deliver signed Stripe events (the sidecar's POST /webhooks/stripe). */
  webhookUrl?: string;
  /** The whsec_ secret events are signed with; required with webhookUrl. */
  webhookSecret?: string;
  /** The API key the emulator accepts; default SANDBOX_STRIPE_SECRET_KEY. */
  secretKey?: string;
  /** ACH debits settle by themselves after this long; absent: only on `sandbox.stripe.settleAch()`. */
  achSettleDelayMs?: number;
  /** Fixed port (e.g. for `paygate sandbox`); default a random free one. */
  port?: number;
}

export interface SandboxOptions {
  /** Loopback by default; the emulators must never be reachable from elsewhere. */
  host?: string;
  stripe?: StripeSandboxOptions;
  // PayPal: add `paypal?: PaypalSandboxOptions` here (webhook URL, webhook id, client credentials).
  /** Share a ledger or fault injector across sandboxes; default a fresh one each. */
  ledger?: Ledger;
  faults?: Faults;
}

export interface Sandbox {
  stripeUrl: string;
  /** Set once the PayPal emulator is wired in. */
  paypalUrl?: string;
  stripe: StripeEmulator;
  // PayPal: add `paypal?: PaypalEmulator` here.
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
  });

  // PayPal: start the PayPal emulator here with the same ledger and faults (close the Stripe one if
  // it fails to start), and add it to the result and to close() below.

  return {
    stripeUrl: stripe.url,
    stripe,
    ledger,
    faults,
    close: async () => {
      await stripe.close();
    },
  };
}
