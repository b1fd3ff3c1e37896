/**
 * Environment -> typed, validated configuration. Secrets live here and nowhere else; `redactedConfig`
 * is the only form that may be printed, and the logger redacts the same keys wherever they appear.
 */
import path from 'node:path';
import pino from 'pino';
import { z } from 'zod';

const optionalSecret = z
  .string()
  .trim()
  .transform((v) => (v === '' ? undefined : v))
  .optional();

const EnvSchema = z.object({
  DATABASE_URL: optionalSecret,
  PAYGATE_DATA_DIR: z.string().trim().min(1).default('./.paygate'),
  STRIPE_SECRET_KEY: optionalSecret.refine((v) => v === undefined || /^(sk|rk)_(test|live)_/.test(v), {
    message: 'STRIPE_SECRET_KEY must start with sk_test_, sk_live_, rk_test_ or rk_live_',
  }),
  STRIPE_WEBHOOK_SECRET: optionalSecret,
  PAYPAL_CLIENT_ID: optionalSecret,
  PAYPAL_CLIENT_SECRET: optionalSecret,
  PAYPAL_WEBHOOK_ID: optionalSecret,
  PAYPAL_ENVIRONMENT: z.enum(['sandbox', 'live']).default('sandbox'),
  ANTHROPIC_API_KEY: optionalSecret,
  ANTHROPIC_MODEL: z.string().trim().min(1).default('claude-sonnet-5-5'),
  PAYGATE_AGENT_KEY: optionalSecret,
  // Every approve_url is built from it, and a client may be asked to open one: a web address only.
  PAYGATE_PUBLIC_URL: z
    .string()
    .trim()
    .url()
    .refine(
      (v) => {
        // Also runs when .url() has failed: a value that does not parse is simply not one.
        if (!URL.canParse(v)) return false;
        const u = new URL(v);
        return (
          (u.protocol === 'http:' || u.protocol === 'https:') &&
          !u.search &&
          !u.hash &&
          !u.username &&
          !u.password
        );
      },
      {
        message:
          'PAYGATE_PUBLIC_URL must be an http:// or https:// address with no query, fragment or credentials',
      },
    )
    .optional(),
  // Encrypts bank account numbers at rest and signs sessions; required once live keys are set.
  PAYGATE_SECRET: optionalSecret,
  PAYGATE_LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
});

export type Env = z.infer<typeof EnvSchema>;

export interface Config {
  databaseUrl?: string;
  dataDir: string;
  stripe: { secretKey?: string; webhookSecret?: string };
  paypal: { clientId?: string; clientSecret?: string; webhookId?: string; environment: 'sandbox' | 'live' };
  anthropic: { apiKey?: string; model: string };
  agentKey?: string;
  publicUrl?: string;
  secret?: string;
  logLevel: Env['PAYGATE_LOG_LEVEL'];
  /** True when no provider keys are set: the built-in sandbox serves every rail. */
  sandbox: boolean;
  /** True when a provider key is a live one (real money). */
  live: boolean;
}

export class ConfigError extends Error {}

/**
 * Live keys need PAYGATE_SECRET. Without it each data directory makes its own: processes on other hosts
 * could not read each other's bank account numbers, and a lost data directory would make them unreadable
 * for good. Checked where the secret is used (every long-running process at start, and every command
 * that seals or signs), not when the configuration loads, so that `db status|stop`, `migrate`, `audit
 * verify` and the humans' commands still work while the operator sets it.
 */
export function requireSharedSecret(config: Pick<Config, 'live' | 'secret' | 'dataDir'>): void {
  if (!config.live || config.secret !== undefined) return;
  throw new ConfigError(
    `live provider keys are set but PAYGATE_SECRET is not: it encrypts bank account numbers and signs sessions, and every paygate process must share it. If ${path.join(config.dataDir, 'secret')} exists, it sealed what is stored so far: set PAYGATE_SECRET to its contents. Otherwise generate one with: node -e "console.log(require('crypto').randomBytes(32).toString('base64url'))"`,
  );
}

export function loadConfig(
  env: NodeJS.ProcessEnv = process.env,
  overrides: { dataDir?: string; databaseUrl?: string } = {},
): Config {
  const parsed = EnvSchema.safeParse(env);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
    throw new ConfigError(`invalid environment: ${problems}`);
  }
  const e = parsed.data;
  const stripeKey = e.STRIPE_SECRET_KEY;
  const live =
    Boolean(stripeKey?.includes('_live_')) ||
    (e.PAYPAL_CLIENT_ID !== undefined && e.PAYPAL_ENVIRONMENT === 'live');
  if (e.PAYPAL_CLIENT_ID !== undefined && e.PAYPAL_CLIENT_SECRET === undefined) {
    throw new ConfigError('PAYPAL_CLIENT_ID is set but PAYPAL_CLIENT_SECRET is not: set both or neither');
  }
  return {
    databaseUrl: overrides.databaseUrl ?? e.DATABASE_URL,
    dataDir: path.resolve(overrides.dataDir ?? e.PAYGATE_DATA_DIR),
    stripe: { secretKey: stripeKey, webhookSecret: e.STRIPE_WEBHOOK_SECRET },
    paypal: {
      clientId: e.PAYPAL_CLIENT_ID,
      clientSecret: e.PAYPAL_CLIENT_SECRET,
      webhookId: e.PAYPAL_WEBHOOK_ID,
      environment: e.PAYPAL_ENVIRONMENT,
    },
    anthropic: { apiKey: e.ANTHROPIC_API_KEY, model: e.ANTHROPIC_MODEL },
    agentKey: e.PAYGATE_AGENT_KEY,
    publicUrl: e.PAYGATE_PUBLIC_URL,
    secret: e.PAYGATE_SECRET,
    logLevel: e.PAYGATE_LOG_LEVEL,
    sandbox: stripeKey === undefined && e.PAYPAL_CLIENT_ID === undefined,
    live,
  };
}

const REDACTED = '[redacted]';

/** The configuration with every secret replaced, safe to print or log. */
export function redactedConfig(config: Config): Record<string, unknown> {
  const mask = (v: string | undefined) => (v === undefined ? undefined : REDACTED);
  return {
    ...config,
    databaseUrl: config.databaseUrl?.replace(/\/\/([^:/@]+):[^@]*@/, `//$1:${REDACTED}@`),
    stripe: { secretKey: mask(config.stripe.secretKey), webhookSecret: mask(config.stripe.webhookSecret) },
    paypal: { ...config.paypal, clientSecret: mask(config.paypal.clientSecret) },
    anthropic: { ...config.anthropic, apiKey: mask(config.anthropic.apiKey) },
    agentKey: mask(config.agentKey),
    secret: mask(config.secret),
  };
}

/** Field names whose values are secrets wherever they appear in a log line. */
export const REDACT_PATHS = [
  'secretKey',
  '*.secretKey',
  'webhookSecret',
  '*.webhookSecret',
  'clientSecret',
  '*.clientSecret',
  'apiKey',
  '*.apiKey',
  'agentKey',
  '*.agentKey',
  'secret',
  '*.secret',
  'token',
  '*.token',
  'approvalToken',
  '*.approvalToken',
  'approval_token',
  '*.approval_token',
  'password',
  '*.password',
  'authorization',
  '*.authorization',
  'headers.authorization',
  'req.headers.authorization',
  'req.headers.cookie',
  'accountNumber',
  '*.accountNumber',
  'account_number',
  '*.account_number',
  'card_number',
  '*.card_number',
];

/** The process logger: JSON lines on stderr (stdout belongs to the MCP stdio transport and CLI output). */
export function createLogger(level: Config['logLevel'] = 'info') {
  return pino(
    { level, redact: { paths: REDACT_PATHS, censor: REDACTED }, base: { service: 'paygate' } },
    pino.destination(2),
  );
}

export type Logger = ReturnType<typeof createLogger>;
