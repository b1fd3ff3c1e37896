/**
 * `paygate demo`: the seed's three requests driven through a real MCP client over Streamable HTTP,
 * approved on the command line by the named humans with their own tokens, each step printed as a
 * person would want to read it. It uses a fresh temporary data directory (an embedded PostgreSQL of its
 * own) unless given one, and leaves nothing running when it exits.
 */
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { type ServeHandle, startServe } from '../cli/serve.js';
import { embeddedStatus, stopEmbeddedServer } from '../db/embedded.js';
import { addDays, nextBusinessDay, todayIn } from '../payments/calendar.js';
import { readDemoCredentials } from './seed.js';

const execFileAsync = promisify(execFile);
const CLI = fileURLToPath(new URL('../cli.js', import.meta.url));

type Out = (line: string) => void;

interface ToolAnswer {
  isError: boolean;
  value: Record<string, unknown>;
}

export async function runDemo(options: { dataDir?: string; out: Out }): Promise<void> {
  const out = options.out;
  const temporary = options.dataDir === undefined;
  const dataDir = options.dataDir
    ? path.resolve(options.dataDir)
    : await fs.mkdtemp(path.join(os.tmpdir(), 'paygate-demo-'));
  // The embedded server runs as the `postgres` OS user when we are root: it must reach the directory.
  await fs.chmod(dataDir, 0o755);
  const wasRunning = (await embeddedStatus(dataDir)).running;
  // The demo always uses its own embedded database, never a DATABASE_URL from the environment.
  delete process.env.DATABASE_URL;
  // Its output is for a person: the server's routine JSON log lines would interleave with the steps.
  process.env.PAYGATE_LOG_LEVEL ??= 'warn';
  out(
    `paygate demo: data in ${dataDir}${temporary ? ' (temporary)' : ''}; providers are the local sandbox, no real money moves\n`,
  );
  const client = new Client({ name: 'paygate-demo', version: '1.0.0' });
  let handle: ServeHandle | undefined;
  // Once, whether the demo ends, fails or is interrupted: nothing it started may outlive it (the embedded
  // server runs detached, so a Ctrl-C that skipped this would leave it running, and the data on disk).
  let cleaned: Promise<void> | undefined;
  const cleanup = () =>
    (cleaned ??= (async () => {
      await client.close().catch(() => {});
      await handle?.close().catch(() => {});
      if (!wasRunning) await stopEmbeddedServer(dataDir).catch(() => false);
      if (temporary) await fs.rm(dataDir, { recursive: true, force: true });
    })());
  const onSignal = (signal: NodeJS.Signals) => {
    out(`\n${signal}: stopping the demo and what it started`);
    void cleanup().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    handle = await startServe({ port: 0, dataDir, seedDemo: true });
    const demo = await readDemoCredentials(dataDir);
    if (!demo) throw new Error(`no demo credentials in ${dataDir}: use a fresh --data-dir`);
    await client.connect(
      new StreamableHTTPClientTransport(new URL(`${handle.url}/mcp`), {
        requestInit: { headers: { Authorization: `Bearer ${demo.agentKey}` } },
      }),
    );
    const tools = await client.listTools();
    out(`agent connected over MCP (${handle.url}/mcp): ${tools.tools.map((t) => t.name).join(', ')}\n`);

    const call = async (name: string, args: Record<string, unknown>): Promise<ToolAnswer> => {
      const result = await client.callTool({ name, arguments: args });
      return {
        isError: Boolean(result.isError),
        value: (result.structuredContent ?? {}) as Record<string, unknown>,
      };
    };
    const approveAs = async (who: { email: string; token: string }, approvalId: string): Promise<string> => {
      const { stdout } = await execFileAsync(
        process.execPath,
        [CLI, '--data-dir', dataDir, '--json', 'approvals', 'approve', approvalId, '--as', who.email],
        { env: { ...process.env, PAYGATE_USER_TOKEN: who.token, PAYGATE_LOG_LEVEL: 'warn' } },
      );
      const answer = JSON.parse(stdout) as { approval_token: string | null };
      if (!answer.approval_token) throw new Error('the approval did not complete');
      out(
        `  ${who.email} ran \`paygate approvals approve ${approvalId.slice(0, 8)}… --as ${who.email}\` with their own token`,
      );
      out(`  → approval token ${answer.approval_token.slice(0, 8)}… (shown once, handed back to the agent)`);
      return answer.approval_token;
    };
    const askThenDo = async (
      title: string,
      tool: string,
      args: Record<string, unknown>,
      approver: { email: string; token: string },
    ) => {
      out(`▶ ${title}`);
      const ask = await call(tool, args);
      if (ask.isError) {
        const error = (ask.value.error ?? {}) as { code?: string; message?: string; next_step?: string };
        if (error.code === 'invoice_already_paid' && !temporary)
          throw new Error(
            `the demo already ran in ${dataDir} (its invoices are paid): run it without --data-dir, or with a new directory`,
          );
        throw new Error(`${tool} refused: ${error.code}: ${error.message} (${error.next_step})`);
      }
      out(`  agent calls ${tool}: no money moves yet; the answer is ${ask.value.status}`);
      out(`  "${ask.value.summary}"`);
      out(`  approve at ${ask.value.approve_url}`);
      const token = await approveAs(approver, String(ask.value.approval_id));
      const done = await call(tool, { ...args, approval_token: token });
      if (done.isError) throw new Error(`${tool} failed: ${JSON.stringify(done.value)}`);
      return done.value;
    };

    const paid = await askThenDo(
      'Pay INV-2025-001, 500.00 USD, by card (Stripe)',
      'pay_invoice',
      { invoice: 'INV-2025-001', amount: '500.00', currency: 'USD', method: 'stripe' },
      demo.admin,
    );
    out(
      `  ✓ ${paid.status}: confirmation ${paid.confirmation_number}, Stripe ${paid.gateway_reference}, approved by ${paid.approved_by}\n`,
    );

    // ACH is scheduled on banking days only.
    const date = nextBusinessDay(addDays(todayIn('UTC'), 2));
    const scheduled = await askThenDo(
      `Schedule INV-2025-002, 1250.00 USD, by ACH for ${date}`,
      'schedule_payment',
      { invoice: 'INV-2025-002', amount: '1250.00', currency: 'USD', method: 'ach', scheduled_date: date },
      demo.approver,
    );
    out(
      `  ✓ ${scheduled.status} for ${scheduled.scheduled_date}, approved by ${scheduled.approved_by}; the worker pays it that day\n`,
    );

    const paypal = await askThenDo(
      'Pay INV-2025-003, 320.00 USD, by PayPal',
      'pay_invoice',
      { invoice: 'INV-2025-003', amount: '320.00', currency: 'USD', method: 'paypal' },
      demo.admin,
    );
    out(`  ✓ ${paypal.status}: PayPal capture ${paypal.gateway_reference}\n`);
    const refunded = await askThenDo(
      'Refund the PayPal payment of INV-2025-003 in full',
      'refund_payment',
      { payment: paypal.payment_id, reason: 'duplicate invoice' },
      demo.approver,
    );
    out(
      `  ✓ ${refunded.status}: ${refunded.refunded_amount} USD back through PayPal, approved by ${demo.approver.email}\n`,
    );

    const status = await call('get_payment_status', { invoice: 'INV-2025-003' });
    out('▶ get_payment_status INV-2025-003');
    for (const h of (status.value.history as { at: string; status: string; note: string }[]) ?? []) {
      out(`  ${h.at}  ${h.status.padEnd(15)} ${h.note}`);
    }
    out('\nevery step above is in the hash-chained audit log: `paygate audit verify` checks it.');
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await cleanup();
  }
}
