/**
 * One paygate process's moving parts, built the same way by `serve`, `mcp`, `worker` and `demo`:
 * configuration, the database, the gateways (with the in-process sandbox when no provider keys are
 * set), and the engine's dependencies.
 */
import { randomBytes } from 'node:crypto';
import { analyzeAlertInBackground, settleAnalyses } from './analysis/index.js';
import {
  type Config,
  ConfigError,
  createLogger,
  type Logger,
  loadConfig,
  requireSharedSecret,
} from './config.js';
import { openDatabase } from './db/connect.js';
import type { Db } from './db/pool.js';
import { RefusedError } from './errors.js';
import { createGateways } from './gateways/index.js';
import type { EngineDeps, FailureNotice } from './payments/context.js';
import { type Sandbox, startSandbox } from './sandbox/index.js';

/** The webhook id the sandbox signs PayPal events with when PAYPAL_WEBHOOK_ID is not set. */
export const SANDBOX_PAYPAL_WEBHOOK_ID = 'PAYGATE-SANDBOX-WEBHOOK';

export interface RuntimeOptions {
  dataDir?: string;
  databaseUrl?: string;
  /** The sidecar's base URL (http://127.0.0.1:PORT): the sandbox delivers signed webhooks there. */
  webhookBaseUrl?: string;
  /** Overrides PAYGATE_PUBLIC_URL (for approve_url links). */
  publicUrl?: string;
  /** Refuse live keys on the embedded database unless this is set (no backups, no replicas). */
  allowEmbeddedLive?: boolean;
  poolSize?: number;
  applicationName?: string;
  env?: NodeJS.ProcessEnv;
}

export interface Runtime {
  config: Config;
  db: Db;
  deps: EngineDeps;
  logger: Logger;
  sandbox?: Sandbox;
  /** The secrets webhooks are verified with (the configured ones, or the sandbox's own). */
  webhooks: { stripeSecret?: string; paypalWebhookId?: string };
  /** Subscribe to alerts after they are committed (error analysis). */
  onAlert(listener: (notice: FailureNotice) => void): void;
  close(): Promise<void>;
}

export async function startRuntime(options: RuntimeOptions = {}): Promise<Runtime> {
  const config = loadConfig(options.env ?? process.env, {
    dataDir: options.dataDir,
    databaseUrl: options.databaseUrl,
  });
  // Every long-running process (serve, mcp, worker) refuses before it connects or moves anything.
  requireSharedSecret(config);
  if (config.live && !config.databaseUrl && !options.allowEmbeddedLive) {
    throw new RefusedError(
      'embedded_live_refused',
      'live provider keys are set but the database is the embedded one, which has no backups or replicas',
      'set DATABASE_URL to a managed PostgreSQL, or pass --allow-embedded-live if you accept the risk',
    );
  }
  const logger = createLogger(config.logLevel);
  const db = await openDatabase(config, {
    max: options.poolSize ?? 10,
    applicationName: options.applicationName ?? 'paygate',
  });
  const webhooks = {
    stripeSecret:
      config.stripe.webhookSecret ??
      (config.sandbox ? `whsec_${randomBytes(24).toString('hex')}` : undefined),
    paypalWebhookId: config.paypal.webhookId ?? (config.sandbox ? SANDBOX_PAYPAL_WEBHOOK_ID : undefined),
  };
  let sandbox: Sandbox | undefined;
  // Several processes sharing one sandbox (the worker tests, a demo with separate processes): point them
  // at a running `paygate sandbox` (or a test's) instead of each starting its own, whose ledger no one
  // else could see. Only without provider keys; the URLs must be loopback emulators.
  const env = options.env ?? process.env;
  const shared =
    config.sandbox && env.PAYGATE_SANDBOX_STRIPE_URL && env.PAYGATE_SANDBOX_PAYPAL_URL
      ? { stripeUrl: env.PAYGATE_SANDBOX_STRIPE_URL, paypalUrl: env.PAYGATE_SANDBOX_PAYPAL_URL }
      : undefined;
  for (const url of shared ? [shared.stripeUrl, shared.paypalUrl] : []) {
    if (!['127.0.0.1', 'localhost', '[::1]'].includes(new URL(url).hostname))
      throw new ConfigError(`PAYGATE_SANDBOX_*_URL must be a loopback address, not ${url}`);
  }
  if (config.sandbox && !shared) {
    const base = options.webhookBaseUrl?.replace(/\/$/, '');
    sandbox = await startSandbox({
      stripe: base
        ? {
            webhookUrl: `${base}/webhooks/stripe`,
            webhookSecret: webhooks.stripeSecret,
            achSettleDelayMs: 5_000,
          }
        : { achSettleDelayMs: 5_000 },
      paypal: base ? { webhookUrl: `${base}/webhooks/paypal`, webhookId: webhooks.paypalWebhookId } : {},
    });
    logger.info(
      { stripe: sandbox.stripeUrl, paypal: sandbox.paypalUrl },
      'sandbox providers started on loopback',
    );
  }
  // Every committed alert gets an explanation for the humans who must act on it: Claude's when
  // ANTHROPIC_API_KEY is set, the deterministic one otherwise. It runs in the background and never
  // touches anything but the alert's analysis; the payment flow does not wait for it.
  const listeners: ((notice: FailureNotice) => void)[] = [
    (notice) =>
      analyzeAlertInBackground(
        db,
        config,
        { tenantId: notice.tenantId, alertId: notice.alertId },
        { kind: notice.refundId ? 'refund' : 'payment', code: notice.code, message: notice.message },
        { logger },
      ),
  ];
  const deps: EngineDeps = {
    db,
    gateway: createGateways(config, {
      sandbox: sandbox ? { stripeUrl: sandbox.stripeUrl, paypalUrl: sandbox.paypalUrl } : shared,
    }),
    publicUrl: options.publicUrl ?? config.publicUrl ?? 'http://127.0.0.1:8787',
    logger,
    onAlert: (notice) => {
      for (const listener of listeners) {
        try {
          listener(notice);
        } catch (error) {
          logger.warn({ err: error }, 'alert listener failed');
        }
      }
    },
  };
  return {
    config,
    db,
    deps,
    logger,
    sandbox,
    webhooks,
    onAlert: (listener) => listeners.push(listener),
    async close() {
      await settleAnalyses();
      await sandbox?.close();
      await db.close();
    },
  };
}
