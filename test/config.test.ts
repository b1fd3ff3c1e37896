/** Going live: what the configuration refuses, and why, before anything connects or moves money. */
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { expect, it } from 'vitest';
import { ConfigError, loadConfig, requireSharedSecret } from '../src/config.js';
import { resolveSecret } from '../src/directory/encryption.js';
import { startRuntime } from '../src/runtime.js';
import { runCli } from './support/cli.js';

const LIVE_STRIPE = { STRIPE_SECRET_KEY: 'sk_live_51NotARealKeyForTests' };
const SECRET = { PAYGATE_SECRET: 'test-secret-of-enough-length-0123456789' };

it('live keys need PAYGATE_SECRET, which every process must share', () => {
  const live = loadConfig(LIVE_STRIPE);
  expect(live).toMatchObject({ live: true, secret: undefined });
  expect(() => requireSharedSecret(live)).toThrow(ConfigError);
  expect(() => requireSharedSecret(live)).toThrow(/PAYGATE_SECRET is not/);
  // An existing deployment's data directory secret sealed what is stored: it says to keep that one.
  expect(() => requireSharedSecret(loadConfig(LIVE_STRIPE, { dataDir: '/srv/paygate' }))).toThrow(
    /If \/srv\/paygate\/secret exists, .* set PAYGATE_SECRET to its contents/,
  );
  const livePaypal = { PAYPAL_CLIENT_ID: 'id', PAYPAL_CLIENT_SECRET: 's', PAYPAL_ENVIRONMENT: 'live' };
  expect(() => requireSharedSecret(loadConfig(livePaypal))).toThrow(/PAYGATE_SECRET is not/);
  expect(() => requireSharedSecret(loadConfig({ ...LIVE_STRIPE, ...SECRET }))).not.toThrow();
  // Test keys and the sandbox make their own per data directory, as before.
  expect(loadConfig({ STRIPE_SECRET_KEY: 'sk_test_abc' })).toMatchObject({ live: false, secret: undefined });
  expect(() => requireSharedSecret(loadConfig({ STRIPE_SECRET_KEY: 'sk_test_abc' }))).not.toThrow();
  expect(loadConfig({})).toMatchObject({ sandbox: true, live: false });
});

it('without it, a long-running process refuses to start and nothing seals or signs under a per-directory secret', async () => {
  const dataDir = await mkdtemp(path.join(tmpdir(), 'paygate-live-'));
  try {
    // Refused before anything connects: with no DATABASE_URL this would otherwise start an embedded server.
    await expect(startRuntime({ env: LIVE_STRIPE, dataDir, allowEmbeddedLive: true })).rejects.toThrow(
      /PAYGATE_SECRET is not/,
    );
    await expect(resolveSecret(loadConfig(LIVE_STRIPE, { dataDir }))).rejects.toThrow(
      /PAYGATE_SECRET is not/,
    );
    expect(await readdir(dataDir)).toEqual([]);
    // What needs no secret still works while the operator sets it: here, asking about the embedded server.
    const status = await runCli(['--data-dir', dataDir, 'db', 'status', '--json'], LIVE_STRIPE);
    expect(status.code, status.stderr).toBe(0);
    expect(JSON.parse(status.stdout)).toMatchObject({ embedded: true, running: false, initialised: false });
  } finally {
    await rm(dataDir, { recursive: true, force: true });
  }
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

it('PAYGATE_PUBLIC_URL is a web address every approve_url can be built on', () => {
  for (const ok of [
    'http://127.0.0.1:8787',
    'https://pay.example.com/base/',
    'HTTPS://Pay.Example.com',
    'http://[::1]:8787',
  ])
    expect(() => loadConfig({ PAYGATE_PUBLIC_URL: ok }), ok).not.toThrow();
  for (const bad of [
    'javascript:alert(1)//',
    'ftp://pay.example.com',
    'https://pay.example.com/?tenant=acme',
    'https://pay.example.com/#top',
    'https://admin:secret@pay.example.com',
  ])
    expect(() => loadConfig({ PAYGATE_PUBLIC_URL: bad }), bad).toThrow(/PAYGATE_PUBLIC_URL/);
});
