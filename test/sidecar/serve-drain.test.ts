/**
 * Stopping `paygate serve` (SIGTERM, a deploy): it takes no new connection, lets the requests in
 * progress finish (a payment whose provider call is under way is answered paid, its phase 3 recorded),
 * and a call waiting on a human through URL elicitation answers approval_required at once instead of
 * holding the stop for the wait's ten minutes. Real serve, real MCP client over Streamable HTTP, the
 * runtime's own sandbox holding the Stripe call in flight.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { ElicitRequestSchema } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { type ServeHandle, startServe } from '../../src/cli/serve.js';
import { type ApprovalRequired, payInvoice } from '../../src/payments/pay.js';
import { httpClient } from '../mcp/helpers.js';
import { createTestDatabase, type TestDatabase } from '../support/db.js';
import { createFixture, type Fixture } from '../support/fixture.js';

let t: TestDatabase;
let f: Fixture;
let dataDir: string;
let handle: ServeHandle | undefined;
let client: Client | undefined;

beforeAll(async () => {
  t = await createTestDatabase();
  f = await createFixture({ t, slug: 'drain' });
  await f.addMethod({ rail: 'stripe', token: 'pm_card_visa', brand: 'visa', last4: '4242' });
  dataDir = await mkdtemp(path.join(os.tmpdir(), 'paygate-drain-'));
});
afterEach(async () => {
  await client?.close().catch(() => {});
  await handle?.close();
  client = handle = undefined;
});
afterAll(async () => {
  await f?.close();
  await t?.drop();
  await rm(dataDir, { recursive: true, force: true });
});

const statusOf = async (invoice: string) =>
  (
    await t.db.withSystem((c) =>
      c.query<{ status: string }>(
        'SELECT p.status FROM payments p JOIN invoices i ON i.id = p.invoice_id WHERE i.number = $1',
        [invoice],
      ),
    )
  ).rows.map((r) => r.status);

it('a payment in progress when the server stops is finished and answered; new connections are refused', async () => {
  handle = await startServe({ port: 0, databaseUrl: t.url, dataDir, worker: false });
  const args = await approvedCall('INV-DR-1', 42_00);
  // Stripe holds the charge until the server has begun to stop.
  const release = holdNextCharge(handle);
  client = await httpClient(`${handle.url}/mcp`, f.agentKeySecret);
  const call = client.callTool({ name: 'pay_invoice', arguments: args });
  while ((await statusOf('INV-DR-1')).length === 0) await new Promise((r) => setTimeout(r, 10));

  const url = handle.url;
  const closing = handle.close();
  handle = undefined;
  await expect(fetch(`${url}/healthz`)).rejects.toThrow();
  release();
  const result = await call;
  expect(result.isError, JSON.stringify(result.structuredContent)).toBeFalsy();
  expect(result.structuredContent).toMatchObject({
    success: true,
    status: 'paid',
    invoice_number: 'INV-DR-1',
  });
  await closing;
  expect(await statusOf('INV-DR-1')).toEqual(['succeeded']);
});

it('a call waiting on a human when the server stops answers approval_required at once; no money moves', async () => {
  handle = await startServe({ port: 0, databaseUrl: t.url, dataDir, worker: false });
  await f.addInvoice('INV-DR-2', 43_00);
  let asked!: (approvalId: string) => void;
  const elicited = new Promise<string>((resolve) => {
    asked = resolve;
  });
  client = await httpClient(`${handle.url}/mcp`, f.agentKeySecret, { elicitation: { url: {} } });
  client.setRequestHandler(ElicitRequestSchema, async (req) => {
    asked((req.params as { url: string }).url.split('/').pop()!);
    return { action: 'accept' };
  });
  // The first progress notification says the server is waiting for the human's decision.
  let isWaiting!: () => void;
  const waiting = new Promise<void>((resolve) => {
    isWaiting = resolve;
  });
  const call = client.callTool(
    {
      name: 'pay_invoice',
      arguments: { invoice: 'INV-DR-2', amount: '43.00', currency: 'USD', method: 'stripe' },
    },
    undefined,
    { onprogress: () => isWaiting() },
  );
  const approvalId = await elicited;
  await waiting;

  const closing = handle.close();
  handle = undefined;
  const result = await call;
  expect(result.isError).toBeFalsy();
  expect(result.structuredContent).toMatchObject({ status: 'approval_required', approval_id: approvalId });
  await closing;
  // The human can still approve; the agent calls again (on another process, or this one restarted).
  expect(await statusOf('INV-DR-2')).toEqual([]);
  const token = await f.approveAs(f.admin, approvalId);
  handle = await startServe({ port: 0, databaseUrl: t.url, dataDir, worker: false });
  const again = await payInvoice(
    handle.runtime.deps,
    { agentKey: f.agentKey },
    { invoice: 'INV-DR-2', amount: '43.00', currency: 'USD', method: 'stripe', approval_token: token },
  );
  expect(again).toMatchObject({ status: 'paid' });
});

/** Stripe holds the next charge until `release` is called (the runtime's own sandbox). */
function holdNextCharge(h: ServeHandle): () => void {
  let release!: () => void;
  const held = new Promise<void>((resolve) => {
    release = resolve;
  });
  h.runtime.sandbox!.faults.next('stripe', {
    kind: 'slow_processing',
    until: held,
    latencyMs: 60_000,
    match: { method: 'POST', path: '/v1/payment_intents' },
  });
  return release;
}

async function approvedCall(invoice: string, amountMinor: number) {
  await f.addInvoice(invoice, amountMinor);
  const input = { invoice, amount: (amountMinor / 100).toFixed(2), currency: 'USD', method: 'stripe' };
  const ask = (await payInvoice(f.deps, { agentKey: f.agentKey }, input)) as ApprovalRequired;
  return { ...input, approval_token: await f.approveAs(f.admin, ask.approval_id) };
}

const until = async (what: () => Promise<boolean>) => {
  while (!(await what())) await new Promise((r) => setTimeout(r, 10));
};

it('a payment whose agent disconnected is still finished before the pool closes', async () => {
  // The agent goes away (its process exits, its connection drops) while the provider call is under
  // way: the call keeps running in the server, and the stop waits for the call, not for its HTTP
  // answer (counting answers closed the pool under phase 3: "Cannot use a pool after calling end").
  handle = await startServe({ port: 0, databaseUrl: t.url, dataDir, worker: false });
  const args = await approvedCall('INV-DR-3', 44_00);
  const release = holdNextCharge(handle);
  client = await httpClient(`${handle.url}/mcp`, f.agentKeySecret);
  const call = client.callTool({ name: 'pay_invoice', arguments: args }).catch(() => 'gone');
  await until(async () => (await statusOf('INV-DR-3')).length > 0);
  await client.close();
  expect(await call).toBe('gone');

  let closed = false;
  const closing = handle.close().then(() => {
    closed = true;
  });
  handle = undefined;
  await new Promise((r) => setTimeout(r, 500));
  const closedWhileProviderHeld = closed;
  release();
  await closing;
  await new Promise((r) => setTimeout(r, 200));
  expect({ closedWhileProviderHeld, status: await statusOf('INV-DR-3') }).toEqual({
    closedWhileProviderHeld: false,
    status: ['succeeded'],
  });
}, 60_000);

it('a call its client cancelled does not hold the stop for the whole drain', async () => {
  // The SDK client cancels a call on its request timeout or an AbortSignal (notifications/cancelled);
  // the server then never answers that request, so its POST stays open: once the call itself is done,
  // the stop must not wait the whole drain (30 s by default, Kubernetes' whole grace period) for it.
  handle = await startServe({ port: 0, databaseUrl: t.url, dataDir, worker: false, drainMs: 600_000 });
  const args = await approvedCall('INV-DR-4', 45_00);
  const release = holdNextCharge(handle);
  client = await httpClient(`${handle.url}/mcp`, f.agentKeySecret);
  const cancel = new AbortController();
  const call = client
    .callTool({ name: 'pay_invoice', arguments: args }, undefined, { signal: cancel.signal })
    .catch(() => 'cancelled');
  await until(async () => (await statusOf('INV-DR-4')).length > 0);
  cancel.abort();
  expect(await call).toBe('cancelled');
  // The notifications/cancelled reaches the server while the provider still holds the charge.
  await new Promise((r) => setTimeout(r, 500));
  release();
  await until(async () => (await statusOf('INV-DR-4'))[0] === 'succeeded');
  await new Promise((r) => setTimeout(r, 200));

  // With a drain limit of ten minutes, close() finishing within the test's timeout is the assertion.
  await handle.close();
  handle = undefined;
}, 60_000);

it('pipelined requests from a client that hung up do not hold every later stop for the whole drain', async () => {
  // Node never emits 'close' on a pipelined request's response still queued when its connection
  // closes: a request must stop counting with its connection, or anyone who can reach the port (no
  // key needed) makes every later stop wait the whole drain.
  handle = await startServe({ port: 0, databaseUrl: t.url, dataDir, worker: false, drainMs: 600_000 });
  const port = Number(new URL(handle.url).port);
  const socket = net.connect(port, '127.0.0.1');
  await new Promise((r) => socket.once('connect', r));
  socket.end(
    'GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nGET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n',
  );
  await new Promise((r) => socket.once('close', r));
  await new Promise((r) => setTimeout(r, 300));
  expect((await fetch(`${handle.url}/healthz`)).status).toBe(200);

  // With a drain limit of ten minutes, close() finishing within the test's timeout is the assertion.
  await handle.close();
  handle = undefined;
}, 60_000);

it('a call whose request was still arriving when the stop began is finished before the pool closes', async () => {
  // The request reached the server before the stop (its headers), its body a moment after: the tool
  // call starts once the body is read, after close() found no call running. A call that starts while
  // the stop gives open requests their 2 s is waited for like the others, not cut at the end of them.
  handle = await startServe({ port: 0, databaseUrl: t.url, dataDir, worker: false, drainMs: 600_000 });
  const args = await approvedCall('INV-DR-5', 46_00);
  const release = holdNextCharge(handle);
  client = await httpClient(`${handle.url}/mcp`, f.agentKeySecret);
  const sessionId = (client.transport as { sessionId?: string }).sessionId!;
  const body = JSON.stringify({
    jsonrpc: '2.0',
    id: 'late-body',
    method: 'tools/call',
    params: { name: 'pay_invoice', arguments: args },
  });
  const received = new Promise<void>((resolve) =>
    handle!.server.on('request', (r: http.IncomingMessage) => {
      if (r.headers['x-late-body']) resolve();
    }),
  );
  const req = http.request(`${handle.url}/mcp`, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${f.agentKeySecret}`,
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
      'mcp-session-id': sessionId,
      'content-length': Buffer.byteLength(body),
      'x-late-body': '1',
    },
  });
  const answered = new Promise<string>((resolve) => {
    req.on('response', (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        text += chunk;
      });
      res.on('end', () => resolve(`${res.statusCode} ${text}`));
      res.on('error', () => resolve('connection lost'));
    });
    req.on('error', () => resolve('connection lost'));
  });
  req.flushHeaders();
  await received;

  let closed = false;
  const closing = handle.close().then(() => {
    closed = true;
  });
  handle = undefined;
  req.end(body);
  // Longer than the answers' 2 s: a stop that waits for the call is still waiting then.
  await Promise.race([closing, new Promise((r) => setTimeout(r, 5_000))]);
  const closedWhileProviderHeld = closed;
  release();
  await closing;
  const answer = await answered;
  await new Promise((r) => setTimeout(r, 200));
  expect({
    closedWhileProviderHeld,
    status: await statusOf('INV-DR-5'),
    paid: answer.startsWith('200 ') && answer.includes('"status":"paid"'),
  }).toEqual({ closedWhileProviderHeld: false, status: ['succeeded'], paid: true });
}, 60_000);
