/**
 * `paygate serve` as one process: the runtime's sandbox delivers its signed webhooks to the sidecar,
 * which verifies them (Stripe with the runtime's secret; PayPal with the sandbox's certificate fetched
 * over loopback and cached under the data directory) and applies them. A payment that the provider
 * settles later is finished by its webhook alone. And the built CLI prints the lines other programs read.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { type ServeHandle, startServe } from '../../src/cli/serve.js';
import { formatAmount } from '../../src/money.js';
import { type PaymentConfirmation, payInvoice } from '../../src/payments/pay.js';
import { refundPayment } from '../../src/payments/refund.js';
import { CLI, startCli } from '../support/cli.js';
import { createTestDatabase, type TestDatabase } from '../support/db.js';
import { createFixture, type Fixture } from '../support/fixture.js';
import { count } from './support.js';

let t: TestDatabase;
let f: Fixture;
let handle: ServeHandle;
let dataDir: string;

beforeAll(async () => {
  t = await createTestDatabase();
  f = await createFixture({ t, slug: 'serve' });
  dataDir = await mkdtemp(path.join(os.tmpdir(), 'paygate-serve-'));
  handle = await startServe({ port: 0, databaseUrl: t.url, dataDir });
});

afterAll(async () => {
  await handle?.close();
  await f?.close();
  await t?.drop();
  await rm(dataDir, { recursive: true, force: true });
});

async function pay(invoice: string, amountMinor: number, method: 'ach' | 'paypal') {
  const deps = handle.runtime.deps;
  await f.addInvoice(invoice, amountMinor);
  const call = { invoice, amount: formatAmount(amountMinor, 'USD'), currency: 'USD', method };
  const ask = (await payInvoice(deps, { agentKey: f.agentKey }, call)) as { approval_id: string };
  const token = await f.approveAs(f.admin, ask.approval_id);
  return (await payInvoice(
    deps,
    { agentKey: f.agentKey },
    { ...call, approval_token: token },
  )) as PaymentConfirmation;
}

const status = (paymentId: string) =>
  t.db.withSystem(
    async (c) => (await c.query('SELECT status FROM payments WHERE id = $1', [paymentId])).rows[0]?.status,
  );

it('answers /healthz and serves the login page', async () => {
  expect(await (await fetch(`${handle.url}/healthz`)).json()).toEqual({ ok: true });
  const login = await fetch(`${handle.url}/approvals`, { redirect: 'manual' });
  expect(login.status).toBe(303);
});

it('a Stripe ACH debit that settles later is finished by its signed webhook', async () => {
  await f.addMethod({ rail: 'ach', token: 'pm_usBankAccount_success', last4: '6789' });
  const paid = await pay('INV-SERVE-1', 250_00, 'ach');
  expect(paid.status).toBe('processing');
  const sandbox = handle.runtime.sandbox!;
  await sandbox.stripe.settleAch();
  await sandbox.stripe.webhooksIdle();
  expect(await status(paid.payment_id)).toBe('succeeded');
  expect(
    await count(
      f,
      "SELECT count(*) AS n FROM webhook_events WHERE provider = 'stripe' AND event_type = 'payment_intent.succeeded' AND tenant_id = $1 AND outcome = 'applied'",
      [f.tenant.id],
    ),
  ).toBe(1);

  // A refund's webhook races our own phase 3; it is matched to our refund, never recorded twice.
  const refunded = await refundPayment(
    handle.runtime.deps,
    { agentKey: f.agentKey },
    { payment: paid.payment_id, amount: '50.00' },
  );
  const token = await f.approveAs(f.admin, (refunded as { approval_id: string }).approval_id);
  await refundPayment(
    handle.runtime.deps,
    { agentKey: f.agentKey },
    { payment: paid.payment_id, amount: '50.00', approval_token: token },
  );
  await sandbox.stripe.webhooksIdle();
  expect(await count(f, 'SELECT count(*) AS n FROM refunds WHERE payment_id = $1', [paid.payment_id])).toBe(
    1,
  );
  expect(await count(f, "SELECT count(*) AS n FROM alerts WHERE kind = 'refund_outside_paygate'")).toBe(0);
  expect(sandbox.stripe.deliveries().every((d) => d.status === 200)).toBe(true);
});

it('a pending PayPal capture is finished by its signed webhook, verified with the cached sandbox certificate', async () => {
  await f.addMethod({ rail: 'paypal', token: 'pp_vault_pending', label: 'Company PayPal' });
  const paid = await pay('INV-SERVE-2', 75_00, 'paypal');
  expect(paid.status).toBe('processing');
  const sandbox = handle.runtime.sandbox!;
  sandbox.paypal.settleCapture(paid.gateway_reference!, 'COMPLETED');
  await sandbox.paypal.webhooksIdle();
  expect(await status(paid.payment_id)).toBe('succeeded');
  expect(sandbox.paypal.deliveries().every((d) => d.status === 200)).toBe(true);
  expect((await readdir(path.join(dataDir, 'paypal-certs'))).filter((x) => x.endsWith('.pem'))).toHaveLength(
    1,
  );
});

it('with --json, serve prints its URLs as one JSON object {approvals, mcp}', async () => {
  const serve = startCli(['--database-url', t.url, '--data-dir', dataDir, 'serve', '--port', '0', '--json']);
  try {
    const line = await serve.firstLine;
    const urls = JSON.parse(line) as { approvals: string; mcp: string };
    expect(urls.approvals).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/approvals$/);
    expect(urls.mcp).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/mcp$/);
    expect((await fetch(urls.mcp.replace(/\/mcp$/, '/healthz'))).status).toBe(200);
  } finally {
    expect(await serve.stop()).toBe(0);
  }
}, 60_000);

it('the built CLI prints the approvals and mcp URLs and stops on SIGTERM', async () => {
  const child = spawn(
    process.execPath,
    [CLI, '--database-url', t.url, '--data-dir', dataDir, 'serve', '--port', '0'],
    {
      env: { PATH: process.env.PATH, HOME: process.env.HOME, PAYGATE_LOG_LEVEL: 'warn' },
    },
  );
  let out = '';
  const lines = await new Promise<string[]>((resolve, reject) => {
    child.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      if (/^mcp: /m.test(out)) resolve(out.trim().split('\n'));
    });
    child.on('exit', (code) => reject(new Error(`serve exited with ${code}`)));
  });
  expect(lines[0]).toMatch(/^approvals: http:\/\/127\.0\.0\.1:\d+\/approvals$/);
  expect(lines[1]).toMatch(/^mcp: http:\/\/127\.0\.0\.1:\d+\/mcp$/);
  const base = lines[0]!.replace(/^approvals: /, '').replace(/\/approvals$/, '');
  expect((await fetch(`${base}/healthz`)).status).toBe(200);
  const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
  child.kill('SIGTERM');
  expect(await exited).toBe(0);
}, 60_000);
