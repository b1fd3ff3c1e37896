/**
 * The API key the Stripe emulator accepts and the gateway uses when paygate runs without a real key.
 * Its own module so the gateway can name it without loading the emulator.
 */
export const SANDBOX_STRIPE_SECRET_KEY = 'sk_test_paygate_sandbox';
