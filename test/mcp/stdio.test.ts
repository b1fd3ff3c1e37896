/**
 * `paygate mcp` as Claude Desktop or Claude Code runs it: the BUILT CLI on stdio, with DATABASE_URL and
 * PAYGATE_AGENT_KEY in its environment, driven by the SDK's real Client (and once by the MCP Inspector
 * CLI). Run `npm run build` first (npm test does).
 */
import { execFile, spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { ElicitRequestSchema } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, cliFor, REPO_ROOT, runCli } from '../support/cli.js';
import { approvedPayCall, createFixture, type Fixture } from '../support/fixture.js';
import { failed, freePort, MONEY_MOVING, ok, TOOL_NAMES } from './helpers.js';

describe('paygate mcp (stdio, built CLI)', () => {
  let f: Fixture;
  let dataDir: string;
  let env: Record<string, string>;
  const clients: Client[] = [];

  async function connect(agentKey: string): Promise<Client> {
    const client = new Client({ name: 'paygate-stdio-test', version: '1.0.0' });
    await client.connect(
      new StdioClientTransport({
        command: process.execPath,
        args: [CLI, 'mcp'],
        env: { ...env, PAYGATE_AGENT_KEY: agentKey },
        stderr: 'ignore',
      }),
    );
    clients.push(client);
    return client;
  }

  beforeAll(async () => {
    f = await createFixture();
    await f.addMethod({ rail: 'stripe', token: 'pm_card_visa', brand: 'visa', last4: '4242' });
    await f.addInvoice('INV-S-001', 250_00);
    dataDir = await mkdtemp(path.join(tmpdir(), 'paygate-mcp-'));
    env = {
      PATH: process.env.PATH ?? '',
      HOME: process.env.HOME ?? '',
      DATABASE_URL: f.t.url,
      PAYGATE_DATA_DIR: dataDir,
      PAYGATE_LOG_LEVEL: 'warn',
      // A port of its own for the approval page: 8787 may be held by another installation's paygate
      // (another test file, another checkout), and `paygate mcp` refuses a port held by a stranger.
      PAYGATE_PUBLIC_URL: `http://127.0.0.1:${await freePort()}`,
    };
  });
  afterAll(async () => {
    for (const c of clients) await c.close().catch(() => {});
    await f?.close();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  it('lists the tools with their annotations', async () => {
    const client = await connect(f.agentKeySecret);
    expect(client.getServerVersion()?.name).toBe('paygate');
    expect(client.getInstructions()).toContain('approval_required');
    const { tools } = await client.listTools();
    expect(tools.map((t) => t.name).sort()).toEqual(TOOL_NAMES);
    for (const name of MONEY_MOVING) {
      expect(tools.find((t) => t.name === name)?.annotations).toMatchObject({
        destructiveHint: true,
        idempotentHint: false,
        openWorldHint: true,
      });
    }
  });

  it('the full approval flow: ask, the human approves, call again with the token, confirmation', async () => {
    const client = await connect(f.agentKeySecret);
    const call = {
      name: 'pay_invoice',
      arguments: { invoice: 'INV-S-001', amount: '250.00', currency: 'USD', method: 'stripe' },
    };
    const ask = ok<{ status: string; approval_id: string; approve_url: string }>(await client.callTool(call));
    expect(ask.status).toBe('approval_required');
    // The human approves at their own terminal, with their own personal access token.
    const approved = await cliFor(f.t.url, dataDir).json<{ status: string; approval_token: string }>(
      ['approvals', 'approve', ask.approval_id, '--as', 'jdoe@example.com'],
      { PAYGATE_USER_TOKEN: f.approver.token },
    );
    expect(approved.status).toBe('approved');
    const token = approved.approval_token;
    expect(token).toMatch(/^apt_/);
    const done = ok(
      await client.callTool({ ...call, arguments: { ...call.arguments, approval_token: token } }),
    );
    expect(done).toMatchObject({
      success: true,
      status: 'paid',
      invoice_number: 'INV-S-001',
      amount: '250.00',
      amount_minor: 25000,
      approved_by: 'jdoe@example.com',
    });
    expect(done.gateway_reference).toMatch(/^pi_/);
    expect(
      failed(await client.callTool({ ...call, arguments: { ...call.arguments, approval_token: token } }))
        .code,
    ).toBe('invoice_already_paid');
  });

  it('URL elicitation through the built CLI: the page is offered, the human approves, the call completes', async () => {
    await f.addInvoice('INV-S-002', 42_00);
    const client = new Client(
      { name: 'paygate-stdio-elicit', version: '1.0.0' },
      { capabilities: { elicitation: { url: {} } } },
    );
    const offered: string[] = [];
    client.setRequestHandler(ElicitRequestSchema, async (req) => {
      const url = (req.params as { url: string }).url;
      offered.push(url);
      // The human approves (as the page would, through src/approvals) after the client opened it.
      setTimeout(() => void f.approveAs(f.approver, url.split('/').pop()!), 100);
      return { action: 'accept' };
    });
    await client.connect(
      new StdioClientTransport({
        command: process.execPath,
        args: [CLI, 'mcp'],
        env: { ...env, PAYGATE_AGENT_KEY: f.agentKeySecret, PAYGATE_PUBLIC_URL: 'http://127.0.0.1:9999' },
        stderr: 'ignore',
      }),
    );
    clients.push(client);
    const result = await client.callTool({
      name: 'pay_invoice',
      arguments: { invoice: 'INV-S-002', amount: '42.00', currency: 'USD', method: 'stripe' },
    });
    expect(ok(result)).toMatchObject({ success: true, status: 'paid', invoice_number: 'INV-S-002' });
    expect(offered).toHaveLength(1);
    expect(offered[0]).toMatch(/^http:\/\/127\.0\.0\.1:9999\/approvals\//);
    expect(JSON.stringify(result)).not.toContain('apt_');
  });

  it('refuses to start without a valid, enabled agent key: stderr says why, exit 1', async () => {
    const missing = await runCli(['mcp'], env);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('no agent key was presented');
    expect(missing.stderr).toContain('PAYGATE_AGENT_KEY');
    const unknown = await runCli(['mcp'], { ...env, PAYGATE_AGENT_KEY: 'pgk_unknown' });
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain('the agent key is not valid');
    expect(unknown.stderr).not.toContain('pgk_unknown');
    const { agentKey, key } = await f.newAgent({ name: 'retired' });
    await f.t.db.withTenant(f.tenant.id, (c) =>
      c.query('UPDATE agent_keys SET disabled_at = now() WHERE id = $1', [agentKey.id]),
    );
    const disabled = await runCli(['mcp'], { ...env, PAYGATE_AGENT_KEY: key });
    expect(disabled.code).toBe(1);
    expect(disabled.stderr).toContain('disabled');
  });

  it('mcp.json works as Claude Code launches it: variables expanded from the environment, cwd the repo', async () => {
    const config = JSON.parse(await readFile(path.join(REPO_ROOT, 'mcp.json'), 'utf8')) as {
      mcpServers: { paygate: { command: string; args: string[]; env: Record<string, string> } };
    };
    const server = config.mcpServers.paygate;
    const outer: Record<string, string | undefined> = {
      PAYGATE_AGENT_KEY: f.agentKeySecret,
      DATABASE_URL: f.t.url,
      PAYGATE_DATA_DIR: dataDir,
      PAYGATE_PUBLIC_URL: env.PAYGATE_PUBLIC_URL,
    };
    // Claude Code's two documented forms: ${VAR} and ${VAR:-default}.
    const expand = (value: string) =>
      value.replace(/\$\{([A-Z_]+)(?::-([^}]*))?\}/g, (_m, name: string, fallback?: string) =>
        outer[name] !== undefined ? outer[name]! : (fallback ?? `\${${name}}`),
      );
    const client = new Client({ name: 'claude-code-like', version: '1.0.0' });
    clients.push(client);
    await client.connect(
      new StdioClientTransport({
        command: server.command === 'node' ? process.execPath : server.command,
        args: server.args,
        cwd: REPO_ROOT,
        env: {
          PATH: env.PATH!,
          HOME: env.HOME!,
          ...Object.fromEntries(Object.entries(server.env).map(([k, v]) => [k, expand(v)])),
        },
        stderr: 'ignore',
      }),
    );
    const { tools } = await client.listTools();
    expect(tools.map((t) => t.name).sort()).toEqual(TOOL_NAMES);
    const status = ok(
      await client.callTool({ name: 'get_payment_status', arguments: { invoice: 'INV-S-001' } }),
    );
    expect(status).toMatchObject({ invoice_number: 'INV-S-001' });
  });

  it("refuses to serve when a human's personal access token is in its environment", async () => {
    const result = await runCli(['mcp'], {
      ...env,
      PAYGATE_AGENT_KEY: f.agentKeySecret,
      PAYGATE_USER_TOKEN: f.admin.token,
    });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('PAYGATE_USER_TOKEN');
    expect(result.stderr).not.toContain(f.admin.token);
  });

  it('an unset PAYGATE_AGENT_KEY that reached paygate unexpanded is named as such', async () => {
    // What Claude Code passes for an unset variable: the placeholder itself.
    const placeholder = '$' + '{PAYGATE_AGENT_KEY}';
    const result = await runCli(['mcp'], { ...env, PAYGATE_AGENT_KEY: placeholder });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('unexpanded');
  });

  it('exits 0 by itself when the client closes stdin (no process left behind)', async () => {
    const child = spawn(process.execPath, [CLI, 'mcp'], {
      env: { ...env, PAYGATE_AGENT_KEY: f.agentKeySecret },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    child.stdin.write(
      `${JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 't', version: '1' } } })}\n`,
    );
    await expect.poll(() => stdout, { timeout: 30_000 }).toContain('"serverInfo"');
    child.stdin.end();
    expect(await exited).toBe(0);
    // stdout carried only protocol messages.
    for (const line of stdout.trim().split('\n')) expect(JSON.parse(line)).toMatchObject({ jsonrpc: '2.0' });
  });

  it('a payment running when the client closes stdin is finished and answered before the process exits', async () => {
    const args = await approvedPayCall(f, f.agentKey, {
      invoice: 'INV-S-EOF',
      amountMinor: 61_00,
      method: 'stripe',
    });
    // The child charges through this test's sandbox, which holds the charge until released.
    let release!: () => void;
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    f.sandbox.faults.next('stripe', {
      kind: 'slow_processing',
      until: held,
      latencyMs: 60_000,
      match: { method: 'POST', path: '/v1/payment_intents' },
    });
    const child = spawn(process.execPath, [CLI, 'mcp'], {
      env: {
        ...env,
        PAYGATE_AGENT_KEY: f.agentKeySecret,
        PAYGATE_SANDBOX_STRIPE_URL: f.sandbox.stripeUrl,
        PAYGATE_SANDBOX_PAYPAL_URL: f.sandbox.paypalUrl,
      },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    const send = (message: object) => child.stdin.write(`${JSON.stringify(message)}\n`);
    send({
      jsonrpc: '2.0',
      id: 1,
      method: 'initialize',
      params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 't', version: '1' } },
    });
    await expect.poll(() => stdout, { timeout: 30_000 }).toContain('"serverInfo"');
    send({ jsonrpc: '2.0', method: 'notifications/initialized' });
    send({ jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'pay_invoice', arguments: args } });
    const status = async () =>
      (
        await f.t.db.withSystem((c) =>
          c.query<{ status: string }>(
            'SELECT p.status FROM payments p JOIN invoices i ON i.id = p.invoice_id WHERE i.number = $1',
            ['INV-S-EOF'],
          ),
        )
      ).rows.map((r) => r.status);
    await expect.poll(status, { timeout: 30_000 }).toEqual(['processing']);
    // The client goes (as the MCP spec has it stop a stdio server) while the provider holds the charge.
    child.stdin.end();
    await new Promise((r) => setTimeout(r, 300));
    release();
    expect(await exited).toBe(0);
    expect(await status()).toEqual(['succeeded']);
    const answer = stdout
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as { id?: number; result?: { structuredContent?: unknown } })
      .find((m) => m.id === 2);
    expect(answer?.result?.structuredContent).toMatchObject({ success: true, status: 'paid' });
  });

  it('the MCP Inspector CLI lists the tools of paygate mcp, offline', async () => {
    const inspector = path.join(REPO_ROOT, 'node_modules/@modelcontextprotocol/inspector-cli/build/index.js');
    const stdout = await new Promise<string>((resolve, reject) => {
      execFile(
        process.execPath,
        [inspector, process.execPath, CLI, 'mcp', '--method', 'tools/list'],
        // inspector-cli 1.0.3 probes "../package.json" against the working directory but imports it
        // against its own folder; from dist/ the probe finds the repo's and the import its own.
        {
          cwd: path.join(REPO_ROOT, 'dist'),
          env: { ...env, PAYGATE_AGENT_KEY: f.agentKeySecret },
          timeout: 60_000,
        },
        (error, out, err) => (error ? reject(new Error(`${error.message}\n${err}`)) : resolve(out)),
      );
    });
    const { tools } = JSON.parse(stdout) as { tools: { name: string }[] };
    expect(tools.map((t) => t.name).sort()).toEqual(TOOL_NAMES);
  });
});
