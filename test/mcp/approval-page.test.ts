/**
 * `paygate mcp` (stdio, the BUILT CLI; `npm run build` first) serves the approval page on
 * PAYGATE_PUBLIC_URL's loopback port, so a Claude Desktop user has somewhere to approve, unless another
 * process already listens there: then a second session starts anyway and leaves the page to the first.
 * When the first session's client closes its stdin the process ends and the port is free again.
 */
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { ReadBuffer, serializeMessage } from '@modelcontextprotocol/sdk/shared/stdio.js';
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import type { JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI } from '../support/cli.js';
import { createFixture, type Fixture } from '../support/fixture.js';
import { freePort } from './helpers.js';

/**
 * The SDK's stdio transport over a child we spawned ourselves, so the test owns the process: it can
 * close just its stdin (what a client does on quit) and see how the process ends, with no SIGTERM.
 */
class ChildStdioTransport implements Transport {
  onclose?: () => void;
  onerror?: (error: Error) => void;
  onmessage?: (message: JSONRPCMessage) => void;
  private readonly buffer = new ReadBuffer();

  constructor(private readonly child: ChildProcessWithoutNullStreams) {}

  async start(): Promise<void> {
    this.child.stdout.on('data', (chunk: Buffer) => {
      this.buffer.append(chunk);
      for (let message = this.buffer.readMessage(); message; message = this.buffer.readMessage()) {
        this.onmessage?.(message);
      }
    });
    this.child.on('error', (error) => this.onerror?.(error));
    this.child.on('close', () => this.onclose?.());
  }

  async send(message: JSONRPCMessage): Promise<void> {
    this.child.stdin.write(serializeMessage(message));
  }

  async close(): Promise<void> {
    this.child.stdin.end();
  }
}

interface Session {
  client: Client;
  child: ChildProcessWithoutNullStreams;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>;
}

describe('paygate mcp serves the approval page when no one else does', () => {
  let f: Fixture;
  let dataDir: string;
  let publicUrl: string;
  const sessions: Session[] = [];

  beforeAll(async () => {
    f = await createFixture({ slug: 'mcppage' });
    dataDir = await mkdtemp(path.join(tmpdir(), 'paygate-mcp-page-'));
    publicUrl = `http://127.0.0.1:${await freePort()}`;
  });
  afterAll(async () => {
    for (const s of sessions) {
      s.child.kill('SIGTERM');
      await s.exited;
    }
    await f?.close();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  async function startSession(): Promise<Session> {
    const child = spawn(process.execPath, [CLI, 'mcp'], {
      env: {
        PATH: process.env.PATH,
        HOME: process.env.HOME,
        DATABASE_URL: f.t.url,
        PAYGATE_DATA_DIR: dataDir,
        PAYGATE_LOG_LEVEL: 'warn',
        PAYGATE_AGENT_KEY: f.agentKeySecret,
        PAYGATE_PUBLIC_URL: publicUrl,
      },
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>(
      (resolve) => child.on('close', (code, signal) => resolve({ code, signal, stderr })),
    );
    const client = new Client({ name: 'paygate-approval-page-test', version: '1.0.0' });
    try {
      await client.connect(new ChildStdioTransport(child));
    } catch (error) {
      // A session that ended before answering says why on stderr: show it.
      const ended = await exited;
      throw new Error(`paygate mcp ended (${ended.code ?? ended.signal}): ${ended.stderr}`, { cause: error });
    }
    const session = { client, child, exited };
    sessions.push(session);
    return session;
  }

  async function loginPage(): Promise<{ status: number; body: string }> {
    const response = await fetch(`${publicUrl}/login`);
    return { status: response.status, body: await response.text() };
  }

  it('the first session serves /login; a second starts beside it; closing stdin frees the port', async () => {
    const first = await startSession();
    // The page is up before the session answers initialize.
    const page = await loginPage();
    expect(page.status).toBe(200);
    expect(page.body).toContain('action="/login"');

    // The port is taken: the second session does not serve, does not crash, and works.
    const second = await startSession();
    const tools = await second.client.listTools();
    expect(tools.tools.map((t) => t.name)).toContain('pay_invoice');
    expect(second.child.exitCode).toBeNull();
    expect((await loginPage()).status).toBe(200);

    // The first client quits: its stdin closes, the process ends by itself, the page with it.
    await first.client.close();
    const ended = await first.exited;
    expect(ended, ended.stderr).toMatchObject({ code: 0, signal: null });
    await expect(fetch(`${publicUrl}/login`)).rejects.toThrow();
    // The second session only looked at startup; it still runs and still answers.
    expect(second.child.exitCode).toBeNull();
    expect((await second.client.listTools()).tools.length).toBe(tools.tools.length);

    // The port is free: the next session to start takes it and serves the page again.
    await startSession();
    expect((await loginPage()).status).toBe(200);
  }, 60_000);
});
