/**
 * Hostile tests of the Streamable HTTP endpoint (src/mcp/http.ts): sessions closed under a call in
 * flight (LRU eviction, idle sweep, DELETE, a reused JSON-RPC id), and refused
 * initialize requests. Real database, real sandbox, real HTTP, the SDK's real Client.
 */
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deferred } from '../support/deferred.js';
import { createFixture, type Fixture, patientDeps } from '../support/fixture.js';
import { type HttpServer, httpClient, ok, startHttp } from './helpers.js';

const PROTOCOL = '2025-06-18';

const pay = (invoice: string, amount: string, approval_token?: string) => ({
  name: 'pay_invoice',
  arguments: {
    invoice,
    amount,
    currency: 'USD',
    method: 'stripe',
    ...(approval_token ? { approval_token } : {}),
  },
});

/** Settles with 'timeout' if `p` has not settled after `ms`. */
function within<T>(p: Promise<T>, ms: number): Promise<{ value?: T; error?: unknown } | 'timeout'> {
  return Promise.race([
    p.then(
      (value) => ({ value }),
      (error: unknown) => ({ error }),
    ),
    new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), ms)),
  ]);
}

async function until(check: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('MCP Streamable HTTP, hostile', () => {
  let f: Fixture;
  const clients: Client[] = [];
  const servers: HttpServer[] = [];

  beforeAll(async () => {
    f = await createFixture({ slug: 'mcp-hostile' });
    await f.addMethod({ rail: 'stripe', token: 'pm_card_visa', brand: 'visa', last4: '4242' });
    for (const [n, amount] of [
      ['INV-H-1', 101_00],
      ['INV-H-2', 102_00],
      ['INV-H-3', 103_00],
      ['INV-H-4', 104_00],
    ] as const)
      await f.addInvoice(n, amount);
  });
  afterAll(async () => {
    for (const c of clients) await c.close().catch(() => {});
    for (const s of servers) await s.close().catch(() => {});
    await f?.close();
  });

  async function server(options: Parameters<typeof startHttp>[1]): Promise<HttpServer> {
    const s = await startHttp(patientDeps(f), options);
    servers.push(s);
    return s;
  }
  async function client(s: HttpServer, key = f.agentKeySecret): Promise<Client> {
    const c = await httpClient(s.url, key);
    clients.push(c);
    return c;
  }

  /** An approval token for paying `invoice`, approved by the fixture's human approver. */
  async function approvedToken(c: Client, invoice: string, amount: string): Promise<string> {
    const ask = ok<{ status: string; approval_id: string }>(await c.callTool(pay(invoice, amount)));
    expect(ask.status).toBe('approval_required');
    const token = await f.approveAs(f.approver, ask.approval_id);
    expect(token).toBeTruthy();
    return token!;
  }

  /** Holds the next Stripe PaymentIntent create inside the sandbox until `release` is called. */
  function holdNextCharge() {
    const hold = deferred();
    const firedBefore = f.sandbox.faults.fired('stripe').length;
    f.sandbox.faults.next('stripe', {
      kind: 'slow_processing',
      until: hold.promise,
      latencyMs: 60_000,
      match: { method: 'POST', path: '/v1/payment_intents' },
    });
    return {
      reached: () => until(() => f.sandbox.faults.fired('stripe').length > firedBefore),
      release: () => hold.resolve(),
    };
  }

  it('a pay_invoice in flight is never closed to make room for a new session: the new one is refused, the call answered, charged once', async () => {
    const s = await server({ maxSessionsPerKey: 1 });
    const a = await client(s); // no URL elicitation: a plain-JSON session
    const token = await approvedToken(a, 'INV-H-1', '101.00');
    const before = f.sandbox.ledger.charges().length;
    const hold = holdNextCharge();
    const call = a.callTool(pay('INV-H-1', '101.00', token));
    await hold.reached();
    // A new session of the same key would have to close `a`, whose call is still running.
    await expect(client(s)).rejects.toThrow(/429|call in progress/);
    hold.release();
    const answer = await within(call, 10_000);
    // The money moved: the agent must be told so, not be left hanging.
    expect(answer).not.toBe('timeout');
    expect((answer as { value?: CallToolResult }).value?.structuredContent).toMatchObject({ status: 'paid' });
    expect(f.sandbox.ledger.charges().length - before).toBe(1);
    // Its call answered, `a` is idle and makes room.
    await client(s);
    expect(s.handler.sessionCount()).toBe(1);
  }, 30_000);

  it('a session whose call is still running is not swept as idle', async () => {
    const s = await server({ sessionIdleMs: 300 });
    const a = await client(s);
    const token = await approvedToken(a, 'INV-H-2', '102.00');
    const hold = holdNextCharge();
    const call = a.callTool(pay('INV-H-2', '102.00', token));
    await hold.reached();
    const sessionsDuringCall = s.handler.sessionCount();
    await new Promise((r) => setTimeout(r, 1_000)); // a few sweeps while the provider works
    const afterSweeps = s.handler.sessionCount();
    hold.release();
    const answer = await within(call, 10_000);
    expect(sessionsDuringCall).toBe(1);
    expect(afterSweeps).toBe(1); // busy, not idle
    expect(answer).not.toBe('timeout');
    expect((answer as { value?: CallToolResult }).value?.isError).toBeFalsy();
  }, 30_000);

  it('DELETE of a session with a call in flight: the call is answered, not left hanging', async () => {
    const s = await server({});
    const a = await client(s);
    const token = await approvedToken(a, 'INV-H-3', '103.00');
    const hold = holdNextCharge();
    const call = a.callTool(pay('INV-H-3', '103.00', token));
    await hold.reached();
    const sessionId = (a.transport as { sessionId?: string }).sessionId!;
    const del = await fetch(s.url, {
      method: 'DELETE',
      headers: {
        authorization: `Bearer ${f.agentKeySecret}`,
        'mcp-session-id': sessionId,
        'mcp-protocol-version': PROTOCOL,
      },
    });
    expect(del.status).toBe(200);
    hold.release();
    expect(await within(call, 10_000)).not.toBe('timeout');
    // Then the session is gone.
    await until(() => s.handler.sessionCount() === 0);
  }, 30_000);

  const initBody = JSON.stringify({
    jsonrpc: '2.0',
    id: 1,
    method: 'initialize',
    params: { protocolVersion: PROTOCOL, capabilities: {}, clientInfo: { name: 'raw', version: '1' } },
  });

  it('a request that reuses the id of a pay_invoice still in flight on a JSON session leaves neither unanswered', async () => {
    const s = await server({});
    const a = await client(s);
    const token = await approvedToken(a, 'INV-H-4', '104.00');
    const base = {
      authorization: `Bearer ${f.agentKeySecret}`,
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
    };
    const r = await fetch(s.url, { method: 'POST', headers: base, body: initBody });
    expect(r.status).toBe(200);
    await r.text();
    const headers = {
      ...base,
      'mcp-session-id': r.headers.get('mcp-session-id')!,
      'mcp-protocol-version': PROTOCOL,
    };
    await (
      await fetch(s.url, {
        method: 'POST',
        headers,
        body: JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }),
      })
    ).text();
    const send = (body: object) =>
      fetch(s.url, { method: 'POST', headers, body: JSON.stringify(body) }).then(
        async (res) => JSON.parse(await res.text()) as { result?: Record<string, unknown>; error?: unknown },
      );
    const before = f.sandbox.ledger.charges().length;
    const hold = holdNextCharge();
    // A buggy client (or two threads of one agent sharing a session) reuses id 7.
    const paid = within(
      send({ jsonrpc: '2.0', id: 7, method: 'tools/call', params: pay('INV-H-4', '104.00', token) }),
      10_000,
    );
    await hold.reached();
    const listed = await within(send({ jsonrpc: '2.0', id: 7, method: 'tools/list' }), 5_000);
    hold.release();
    const payment = await paid;
    expect(f.sandbox.ledger.charges().length - before).toBe(1);
    // Refusing the duplicate id with a JSON-RPC error would be fine; hanging, or answering one request
    // with the other's result, is not: the money moved and the agent must hear of it.
    expect(listed).not.toBe('timeout');
    expect(payment).not.toBe('timeout');
    const payResult = (payment as { value: { result?: Record<string, unknown> } }).value.result;
    expect(payResult?.tools).toBeUndefined();
  }, 30_000);

  it('an initialize the transport refuses (406, wrong Accept) does not close a live session of the key', async () => {
    const s = await server({ maxSessionsPerKey: 1 });
    const a = await client(s);
    ok(await a.callTool({ name: 'list_invoices', arguments: {} }));
    const refused = await fetch(s.url, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${f.agentKeySecret}`,
        'content-type': 'application/json',
        accept: 'text/plain',
      },
      body: initBody,
    });
    expect(refused.status).toBe(406);
    await refused.text();
    // No session was opened, so none had to make room for it.
    expect(s.handler.sessionCount()).toBe(1);
    ok(await a.callTool({ name: 'list_invoices', arguments: {} }));
  }, 30_000);
});
