/**
 * The MCP Streamable HTTP endpoint, mounted the way `paygate serve` mounts it (the
 * MCP router first, then the sidecar app, on one root Express app), with the SDK's real Client and raw
 * HTTP where a client would never send what an attacker does.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/config.js';
import { createMcpHttpHandler, type McpHttpHandler } from '../../src/mcp/http.js';
import { createSidecarApp } from '../../src/sidecar/app.js';
import { count } from '../sidecar/support.js';
import { approvedPayCall, createFixture, type Fixture, patientDeps } from '../support/fixture.js';
import { failed, httpClient, ok, startHttp } from './helpers.js';

const PROTOCOL = '2025-06-18';

describe('MCP Streamable HTTP', () => {
  let f: Fixture;
  let handler: McpHttpHandler;
  let server: http.Server;
  let base: string;
  let url: string;
  const clients: Client[] = [];

  beforeAll(async () => {
    f = await createFixture({ slug: 'mcp-input' });
    await f.addMethod({ rail: 'stripe', token: 'pm_card_visa', brand: 'visa', last4: '4242' });
    await f.addInvoice('INV-M3-1', 100_00);
    await f.addInvoice('INV-M3-2', 200_00);
    handler = createMcpHttpHandler({ deps: f.deps, logger: createLogger('silent') });
    const sidecar = createSidecarApp(
      { db: f.t.db, deps: f.deps, webhooks: {} },
      { instrumentGateways: false },
    );
    server = http.createServer((req, res) => {
      if (!handler.handle(req, res)) sidecar(req, res);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    url = `${base}/mcp`;
  });
  afterAll(async () => {
    for (const c of clients) await c.close().catch(() => {});
    await handler?.close();
    server?.closeAllConnections();
    await new Promise((resolve) => server?.close(resolve));
    await f?.close();
  });

  const headers = (key: string, extra: Record<string, string> = {}) => ({
    authorization: `Bearer ${key}`,
    'content-type': 'application/json',
    accept: 'application/json, text/event-stream',
    ...extra,
  });

  async function initialize(key: string, capabilities: object = {}): Promise<string> {
    const r = await fetch(url, {
      method: 'POST',
      headers: headers(key),
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 1,
        method: 'initialize',
        params: { protocolVersion: PROTOCOL, capabilities, clientInfo: { name: 'raw', version: '1' } },
      }),
    });
    expect(r.status).toBe(200);
    await r.text();
    const id = r.headers.get('mcp-session-id');
    expect(id).toBeTruthy();
    await fetch(url, {
      method: 'POST',
      headers: headers(key, { 'mcp-session-id': id!, 'mcp-protocol-version': PROTOCOL }),
      body: JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }),
    });
    return id!;
  }

  it('answers a session that cannot take URL elicitation with plain JSON, and one that can with an event stream', async () => {
    // Only a client declaring URL elicitation is ever sent anything in the middle of a call (the
    // elicitation and its progress notifications); every other session needs no stream per request.
    const call = async (capabilities: object) => {
      const id = await initialize(f.agentKeySecret, capabilities);
      const r = await fetch(url, {
        method: 'POST',
        headers: headers(f.agentKeySecret, { 'mcp-session-id': id, 'mcp-protocol-version': PROTOCOL }),
        body: JSON.stringify({
          jsonrpc: '2.0',
          id: 2,
          method: 'tools/call',
          params: { name: 'list_invoices', arguments: {} },
        }),
      });
      return { type: r.headers.get('content-type'), body: await r.text() };
    };
    const plain = await call({});
    expect(plain.type).toMatch(/^application\/json/);
    expect(JSON.parse(plain.body)).toMatchObject({
      jsonrpc: '2.0',
      id: 2,
      result: { structuredContent: { invoices: expect.any(Array) } },
    });
    expect(plain.body).toContain('INV-M3-1');
    const streamed = await call({ elicitation: { url: {} } });
    expect(streamed.type).toMatch(/^text\/event-stream/);
    expect(streamed.body).toMatch(/^event: message\ndata: \{"result":/m);
    expect(streamed.body).toContain('INV-M3-1');
    // A form-only elicitation client is never sent a URL elicitation either.
    expect((await call({ elicitation: { form: {} } })).type).toMatch(/^application\/json/);
  });

  it('answers /mcp with a query string, in any case or with a trailing slash, and nothing beside it', async () => {
    for (const path of ['/mcp?from=test', '/MCP', '/mcp/']) {
      const r = await fetch(`${base}${path}`, {
        method: 'POST',
        headers: headers(f.agentKeySecret),
        body: '{',
      });
      expect(r.status, path).toBe(400);
      expect(await r.json()).toMatchObject({ jsonrpc: '2.0', error: { code: -32700 } });
    }
    // A request line in absolute form, as a forward proxy sends it, is /mcp too.
    const absolute = await new Promise<number>((resolve, reject) => {
      const req = http.request(base, {
        method: 'POST',
        path: `${base}/mcp`,
        headers: { ...headers(f.agentKeySecret), 'content-length': 1 },
      });
      req.on('response', (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', reject);
      req.end('{');
    });
    expect(absolute).toBe(400);
    // Any other path is the sidecar's, which knows nothing of it.
    const other = await fetch(`${base}/mcpx`, {
      method: 'POST',
      headers: headers(f.agentKeySecret),
      body: '{}',
    });
    expect(other.status).toBe(404);
  });

  it('malformed JSON is a JSON-RPC parse error (-32700), with no stack trace or file path', async () => {
    const r = await fetch(url, {
      method: 'POST',
      headers: headers(f.agentKeySecret),
      body: '{"jsonrpc":"2.0",',
    });
    const text = await r.text();
    expect(text).not.toMatch(/node_modules|\bat .+:\d+:\d+|SyntaxError/);
    expect(r.status).toBe(400);
    expect(JSON.parse(text)).toMatchObject({ jsonrpc: '2.0', error: { code: -32700 } });
  });

  it('an unauthenticated malformed body is refused without a stack trace either', async () => {
    const r = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{',
    });
    const text = await r.text();
    expect(text).not.toMatch(/node_modules|\bat .+:\d+:\d+/);
  });

  it('a body over 1 MB is refused with 413 and no stack trace', async () => {
    const body = JSON.stringify({
      jsonrpc: '2.0',
      id: 1,
      method: 'ping',
      params: { pad: 'x'.repeat(1_100_000) },
    });
    const r = await fetch(url, { method: 'POST', headers: headers(f.agentKeySecret), body });
    const text = await r.text();
    expect(r.status).toBe(413);
    expect(text).not.toMatch(/node_modules|\bat .+:\d+:\d+/);
  });

  it('Host and Origin from elsewhere are refused (DNS rebinding)', async () => {
    const body = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'ping' });
    for (const h of [
      { host: 'evil.example' },
      { host: '127.0.0.1.evil.example' },
      { origin: 'http://evil.example' },
      { origin: 'null' },
    ]) {
      const r = await new Promise<number>((resolve, reject) => {
        const req = http.request(
          url,
          { method: 'POST', headers: { ...headers(f.agentKeySecret), ...h } },
          (res) => {
            res.resume();
            resolve(res.statusCode!);
          },
        );
        req.on('error', reject);
        req.end(body);
      });
      expect(r, JSON.stringify(h)).toBe(403);
    }
  });

  it('a session is bound to its key, guessed ids are 404, and a DELETEd session is gone', async () => {
    const id = await initialize(f.agentKeySecret);
    const other = await f.newAgent({ name: 'other' });
    const list = JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tools/list' });
    const stolen = await fetch(url, {
      method: 'POST',
      headers: headers(other.key, { 'mcp-session-id': id, 'mcp-protocol-version': PROTOCOL }),
      body: list,
    });
    expect(stolen.status).toBe(403);
    const guessed = await fetch(url, {
      method: 'POST',
      headers: headers(f.agentKeySecret, {
        'mcp-session-id': crypto.randomUUID(),
        'mcp-protocol-version': PROTOCOL,
      }),
      body: list,
    });
    expect(guessed.status).toBe(404);
    // Another key cannot DELETE it either.
    const otherDelete = await fetch(url, {
      method: 'DELETE',
      headers: headers(other.key, { 'mcp-session-id': id }),
    });
    expect(otherDelete.status).toBe(403);
    const del = await fetch(url, {
      method: 'DELETE',
      headers: headers(f.agentKeySecret, { 'mcp-session-id': id, 'mcp-protocol-version': PROTOCOL }),
    });
    expect(del.status).toBe(200);
    const reuse = await fetch(url, {
      method: 'POST',
      headers: headers(f.agentKeySecret, { 'mcp-session-id': id, 'mcp-protocol-version': PROTOCOL }),
      body: list,
    });
    expect(reuse.status).toBe(404);
    await reuse.text();
  });

  it('GET without a session is refused; GET with one opens an SSE stream', async () => {
    const r = await fetch(url, {
      method: 'GET',
      headers: { authorization: `Bearer ${f.agentKeySecret}`, accept: 'text/event-stream' },
    });
    expect(r.status).toBe(400);
    await r.text();
    const id = await initialize(f.agentKeySecret);
    const ac = new AbortController();
    const sse = await fetch(url, {
      method: 'GET',
      signal: ac.signal,
      headers: {
        authorization: `Bearer ${f.agentKeySecret}`,
        accept: 'text/event-stream',
        'mcp-session-id': id,
        'mcp-protocol-version': PROTOCOL,
      },
    });
    expect(sse.status).toBe(200);
    expect(sse.headers.get('content-type')).toMatch(/text\/event-stream/);
    ac.abort();
  });

  it('extra arguments (confirm, approved_by, tenant) prove nothing and change no tenant', async () => {
    const client = await httpClient(url, f.agentKeySecret);
    clients.push(client);
    const before = await count(f, 'SELECT count(*) AS n FROM payments');
    const result = await client.callTool({
      name: 'pay_invoice',
      arguments: {
        invoice: 'INV-M3-1',
        amount: '100.00',
        currency: 'USD',
        method: 'stripe',
        confirm: true,
        approved_by: 'admin@example.com',
        approved: true,
        tenant_id: '00000000-0000-0000-0000-000000000000',
      },
    });
    const body = (result as { structuredContent?: { status?: string } }).structuredContent;
    // The extra arguments are not part of the tool: ignored, and the call asks for an approval as usual.
    expect((result as { isError?: boolean }).isError, JSON.stringify(body)).toBeFalsy();
    expect(body?.status).toBe('approval_required');
    expect(await count(f, 'SELECT count(*) AS n FROM payments')).toBe(before);
  });

  it('wrongly typed arguments are an error result without stack frames or SQL', async () => {
    const client = await httpClient(url, f.agentKeySecret);
    clients.push(client);
    const bad: Record<string, unknown>[] = [
      { invoice: 123, amount: '100.00', currency: 'USD', method: 'stripe' },
      { invoice: 'INV-M3-1', amount: 100, currency: 'USD', method: 'stripe' },
      { invoice: 'INV-M3-1', amount: '1e2', currency: 'USD', method: 'stripe' },
      { invoice: 'INV-M3-1', amount: '100.00', currency: 'usd', method: 'wire' },
      { invoice: "INV' OR 1=1 --", amount: '100.00', currency: 'USD', method: 'stripe' },
      { invoice: 'x'.repeat(100_000), amount: '100.00', currency: 'USD', method: 'stripe' },
      {
        invoice: 'INV-M3-1',
        amount: '100.00',
        currency: 'USD',
        method: 'stripe',
        approval_token: 'apt_\u0000',
      },
    ];
    for (const args of bad) {
      let text = '';
      try {
        const r = await client.callTool({ name: 'pay_invoice', arguments: args });
        text = JSON.stringify(r);
        expect((r as { isError?: boolean }).isError, text.slice(0, 300)).toBe(true);
      } catch (error) {
        text = String((error as Error).message);
      }
      expect(text).not.toMatch(
        /\bat .+\.(ts|js):\d+|node_modules|SELECT |INSERT |violates|syntax error|invalid byte sequence/i,
      );
      expect(text).not.toMatch(/internal_error/);
    }
  });

  it('a NUL byte in the invoice number or payment reference is a usage error, not a retryable internal_error', async () => {
    const client = await httpClient(url, f.agentKeySecret);
    clients.push(client);
    const r = await client.callTool({
      name: 'pay_invoice',
      arguments: { invoice: 'INV-M3-1\u0000', amount: '100.00', currency: 'USD', method: 'stripe' },
    });
    const error = failed(r);
    expect(error.code).not.toBe('internal_error');
    expect(error.retryable).toBe(false);
    const status = failed(
      await client.callTool({ name: 'get_payment_status', arguments: { payment: 'pi_x\u0000' } }),
    );
    expect(status.code).not.toBe('internal_error');
  });

  it('a batch of many tools/call in one POST is refused or rate-limited; it creates at most the per-key budget', async () => {
    const id = await initialize(f.agentKeySecret);
    const batch = Array.from({ length: 200 }, (_, i) => ({
      jsonrpc: '2.0',
      id: 100 + i,
      method: 'tools/call',
      params: {
        name: 'pay_invoice',
        arguments: { invoice: 'INV-M3-2', amount: '200.00', currency: 'USD', method: 'stripe' },
      },
    }));
    const r = await fetch(url, {
      method: 'POST',
      headers: headers(f.agentKeySecret, { 'mcp-session-id': id, 'mcp-protocol-version': PROTOCOL }),
      body: JSON.stringify(batch),
    });
    await r.text();
    expect(r.status).toBeLessThan(500);
    // Identical requests share one pending approval.
    expect(
      await count(
        f,
        "SELECT count(*) AS n FROM approvals a JOIN invoices i ON i.id = (a.params->>'invoice_id')::uuid WHERE i.number = 'INV-M3-2' AND a.status = 'pending'",
      ),
    ).toBeLessThanOrEqual(1);
  });

  it('a notification-only POST is 202 with no body', async () => {
    const id = await initialize(f.agentKeySecret);
    const r = await fetch(url, {
      method: 'POST',
      headers: headers(f.agentKeySecret, { 'mcp-session-id': id, 'mcp-protocol-version': PROTOCOL }),
      body: JSON.stringify({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 999 } }),
    });
    expect(r.status).toBe(202);
  });

  it('a list tool still works afterwards (server healthy)', async () => {
    const client = await httpClient(url, f.agentKeySecret);
    clients.push(client);
    ok(await client.callTool({ name: 'list_invoices', arguments: {} }));
    failed(
      await client.callTool({
        name: 'get_payment_status',
        arguments: { payment: '00000000-0000-0000-0000-000000000001' },
      }),
    );
  });

  it("past its key's session limit, a new session closes the key's least recently used one without a call in progress", async () => {
    // The calls held in progress wait inside Stripe (sandbox fault slow_processing) until released.
    const limited = await startHttp(patientDeps(f), { maxSessionsPerKey: 2 });
    let release!: () => void;
    const released = new Promise<void>((resolve) => {
      release = resolve;
    });
    const opened: Client[] = [];
    const connect = async (key: string) => {
      const c = await httpClient(limited.url, key);
      opened.push(c);
      return c;
    };
    const heldAtStripe = async (client: Client, invoice: string) => {
      const args = await approvedPayCall(f, f.agentKey, { invoice, amountMinor: 50_00, method: 'stripe' });
      const fired = f.sandbox.faults.fired('stripe').length;
      f.sandbox.faults.next('stripe', {
        kind: 'slow_processing',
        until: released,
        match: { method: 'POST', path: '/v1/payment_intents' },
      });
      const call = client.callTool({ name: 'pay_invoice', arguments: args });
      await expect.poll(() => f.sandbox.faults.fired('stripe').length, { timeout: 10_000 }).toBe(fired + 1);
      // In an object: an async function returning the call itself would wait for it.
      return { call };
    };
    // A client that vanished without DELETE: initialized, then nothing more.
    const vanished = async () => {
      const r = await fetch(limited.url, {
        method: 'POST',
        headers: headers(f.agentKeySecret),
        body: JSON.stringify({
          jsonrpc: '2.0',
          id: 1,
          method: 'initialize',
          params: { protocolVersion: PROTOCOL, capabilities: {}, clientInfo: { name: 'gone', version: '1' } },
        }),
      });
      await r.text();
      return r.headers.get('mcp-session-id')!;
    };
    const listed = (sessionId: string) =>
      fetch(limited.url, {
        method: 'POST',
        headers: headers(f.agentKeySecret, { 'mcp-session-id': sessionId, 'mcp-protocol-version': PROTOCOL }),
        body: JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tools/list' }),
      }).then(async (r) => {
        await r.text();
        return r.status;
      });
    try {
      const theirs = await connect((await f.newAgent({ name: 'other-key' })).key);
      const a = await connect(f.agentKeySecret);
      const { call: callA } = await heldAtStripe(a, 'INV-M3-HELD-A');
      const gone = await vanished();
      // The key is at its limit: the idle session goes, not the older one whose call is in progress.
      const b = await connect(f.agentKeySecret);
      expect(await listed(gone)).toBe(404);
      const { call: callB } = await heldAtStripe(b, 'INV-M3-HELD-B');
      // Both have a call in progress: no room is made, and the new session is refused.
      await expect(connect(f.agentKeySecret)).rejects.toThrow(/429|call in progress/);
      release();
      expect(ok(await callA)).toMatchObject({ status: 'paid', invoice_number: 'INV-M3-HELD-A' });
      expect(ok(await callB)).toMatchObject({ status: 'paid', invoice_number: 'INV-M3-HELD-B' });
      // Their calls done (in either order), b is used again: a is now the least recently used, and makes
      // room for the next one.
      ok(await b.callTool({ name: 'list_invoices', arguments: {} }));
      const c = await connect(f.agentKeySecret);
      await expect(a.callTool({ name: 'list_invoices', arguments: {} })).rejects.toThrow(/404|not found/i);
      for (const client of [b, c, theirs])
        ok(await client.callTool({ name: 'list_invoices', arguments: {} }));
      expect(limited.handler.sessionCount()).toBe(3);
    } finally {
      release();
      for (const client of opened) await client.close().catch(() => {});
      await limited.close();
    }
  });
});
