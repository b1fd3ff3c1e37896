/** Going live: what the configuration refuses, and why, before anything connects or moves money. */
import { expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../src/config.js';
import { startRuntime } from '../src/runtime.js';

const LIVE_STRIPE = { STRIPE_SECRET_KEY: 'sk_live_51NotARealKeyForTests' };
const SECRET = { PAYGATE_SECRET: 'test-secret-of-enough-length-0123456789' };

it('live keys need PAYGATE_SECRET, which every process must share', () => {
  expect(() => loadConfig(LIVE_STRIPE)).toThrow(ConfigError);
  expect(() => loadConfig(LIVE_STRIPE)).toThrow(/PAYGATE_SECRET is not/);
  // An existing deployment's data directory secret sealed what is stored: it says to keep that one.
  expect(() => loadConfig(LIVE_STRIPE, { dataDir: '/srv/paygate' })).toThrow(
    /If \/srv\/paygate\/secret exists, .* set PAYGATE_SECRET to its contents/,
  );
  const livePaypal = { PAYPAL_CLIENT_ID: 'id', PAYPAL_CLIENT_SECRET: 's', PAYPAL_ENVIRONMENT: 'live' };
  expect(() => loadConfig(livePaypal)).toThrow(/PAYGATE_SECRET is not/);
  expect(loadConfig({ ...LIVE_STRIPE, ...SECRET })).toMatchObject({ live: true, sandbox: false });
  // Test keys and the sandbox make their own per data directory, as before.
  expect(loadConfig({ STRIPE_SECRET_KEY: 'sk_test_abc' })).toMatchObject({ live: false, secret: undefined });
  expect(loadConfig({})).toMatchObject({ sandbox: true, live: false });
});

it('live keys on the embedded database are refused unless allowed, and the refusal says what to do', async () => {
  const refusal = await startRuntime({
    env: { ...LIVE_STRIPE, ...SECRET },
    dataDir: '/nonexistent/paygate',
  }).then(
    () => undefined,
    (error: unknown) => error as { code?: string; nextStep?: string },
  );
  expect(refusal?.code).toBe('embedded_live_refused');
  expect(refusal?.nextStep).toContain('DATABASE_URL');
  expect(refusal?.nextStep).toContain('--allow-embedded-live');
});
