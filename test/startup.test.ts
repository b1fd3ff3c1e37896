/**
 * pass 5: startup and configuration through the built CLI (run `npm run build` first).
 * Real processes, a real PostgreSQL (the run's), secrets set in the environment and looked for in output.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, runCli } from './support/cli.js';
import { createTestDatabase, type TestDatabase } from './support/db.js';

const SECRETS = {
  PAYGATE_SECRET: 'testonly-paygate-secret-Zq81xL0pW',
  ANTHROPIC_API_KEY: 'sk-ant-api03-testonlyKeyNeverPrinted0042',
  STRIPE_WEBHOOK_SECRET: 'whsec_testonlyWebhookSecretNeverPrinted',
  PAYGATE_AGENT_KEY: 'pgk_testonlyAgentKeyNeverPrinted',
  PAYPAL_WEBHOOK_ID: 'TESTONLY-WEBHOOK-ID-NEVER',
};

let t: TestDatabase;

beforeAll(async () => {
  t = await createTestDatabase();
});
afterAll(async () => {
  await t?.drop();
});

/** Start `paygate serve` and wait for its `mcp:` line; the caller stops it. */
function startServe(
  env: Record<string, string | undefined>,
  args: string[] = [],
): Promise<{ child: ChildProcess; out: () => string; exited: Promise<number | null> }> {
  const child = spawn(process.execPath, [CLI, 'serve', '--port', '0', ...args], {
    env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let all = '';
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  return new Promise((resolve, reject) => {
    const onData = (d: Buffer) => {
      all += d.toString();
      if (/^mcp: /m.test(all)) resolve({ child, out: () => all, exited });
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    void exited.then((code) => reject(new Error(`serve exited ${code} before it was ready:\n${all}`)));
  });
}

describe('secrets at startup', () => {
  it('`paygate serve` at debug log level prints none of the secrets it was given', async () => {
    const s = await startServe({
      DATABASE_URL: t.url,
      PAYGATE_LOG_LEVEL: 'debug',
      ...SECRETS,
    });
    // Touch the health endpoint so request logging (if any) runs too.
    const url = /^approvals: (http:\/\/[^/\s]+)/m.exec(s.out())?.[1];
    if (url) await fetch(`${url}/healthz`).catch(() => undefined);
    s.child.kill('SIGTERM');
    await s.exited;
    const out = s.out();
    for (const [name, value] of Object.entries(SECRETS)) {
      expect(out, `${name} leaked`).not.toContain(value);
    }
  });

  it('a DATABASE_URL that points nowhere fails cleanly, without printing its password', async () => {
    const r = await runCli(['worker', '--once'], {
      DATABASE_URL: 'postgres://paygate:TestOnlyDbPassw0rd@127.0.0.1:1/paygate',
      PAYGATE_SECRET: SECRETS.PAYGATE_SECRET,
    });
    expect(r.code).not.toBe(0);
    expect(r.stdout + r.stderr).not.toContain('TestOnlyDbPassw0rd');
    expect(r.stderr).not.toMatch(/\n\s+at .+:\d+:\d+/); // no stack trace
  });

  it('a DATABASE_URL that is not a URL fails cleanly, without printing it', async () => {
    const r = await runCli(['worker', '--once'], {
      DATABASE_URL: 'host=127.0.0.1 password=TestOnlyDbPassw0rd dbname=x port=notaport',
      PAYGATE_SECRET: SECRETS.PAYGATE_SECRET,
    });
    expect(r.code).not.toBe(0);
    expect(r.stdout + r.stderr).not.toContain('TestOnlyDbPassw0rd');
  });
});

describe('invalid configuration values', () => {
  it('PAYGATE_PUBLIC_URL that is not a URL is a usage error (exit 2) naming the variable', async () => {
    const r = await runCli(['worker', '--once'], {
      DATABASE_URL: t.url,
      PAYGATE_SECRET: SECRETS.PAYGATE_SECRET,
      PAYGATE_PUBLIC_URL: 'not a url',
    });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('PAYGATE_PUBLIC_URL');
  });

  it('PAYGATE_PUBLIC_URL with a script scheme is refused (it becomes every approve_url a human clicks)', async () => {
    const r = await runCli(['worker', '--once'], {
      DATABASE_URL: t.url,
      PAYGATE_SECRET: SECRETS.PAYGATE_SECRET,
      PAYGATE_PUBLIC_URL: 'javascript:alert(document.cookie)//',
    });
    expect(r.code).toBe(2);
  });

  it.each([['abc'], ['-1'], ['70000'], ['1.5']])('serve --port %s is a usage error', async (port) => {
    const r = await runCli(['serve', '--port', port], {
      DATABASE_URL: t.url,
      PAYGATE_SECRET: SECRETS.PAYGATE_SECRET,
    });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--port');
  });

  it.each([['abc'], ['0'], ['-5']])(
    'worker --once --batch-size %s is a usage error, not a crash or a silent no-op',
    async (n) => {
      const r = await runCli(['worker', '--once', '--batch-size', n], {
        DATABASE_URL: t.url,
        PAYGATE_SECRET: SECRETS.PAYGATE_SECRET,
      });
      expect({ code: r.code, stderr: r.stderr }).toMatchObject({ code: 2 });
      expect(r.stderr).toContain('--batch-size');
    },
  );

  it('worker --once on an empty database exits 0 with a summary', async () => {
    const r = await runCli(['worker', '--once', '--json'], {
      DATABASE_URL: t.url,
      PAYGATE_SECRET: SECRETS.PAYGATE_SECRET,
    });
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ errors: 0, aborted: false });
  });
});
