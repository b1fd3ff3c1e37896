/**
 * Agent keys that an admin disables while the agent is connected: over Streamable
 * HTTP while a call waits on a URL elicitation, and over stdio (the BUILT CLI; run `npm run build`
 * first). src/mcp/http.ts promises "a key disabled mid-session stops working at once".
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { ElicitRequestSchema } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { approve } from '../../src/approvals/approvals.js';
import { CLI } from '../support/cli.js';
import { createFixture, type Fixture } from '../support/fixture.js';
import { freePort, type HttpServer, httpClient, ok, startHttp } from './helpers.js';

interface Ask {
  status: 'approval_required';
  approval_id: string;
}

const pay = (invoice: string, amount: string, extra: Record<string, unknown> = {}) => ({
  name: 'pay_invoice',
  arguments: { invoice, amount, currency: 'USD', method: 'stripe', ...extra },
});

describe('an agent key disabled while the agent is connected', () => {
  let f: Fixture;
  let http: HttpServer;
  let dataDir: string;
  const clients: Client[] = [];

  const disable = (id: string) =>
    f.t.db.withTenant(f.tenant.id, (db) =>
      db.query('UPDATE agent_keys SET disabled_at = now() WHERE id = $1', [id]),
    );
  const paymentsOf = async (invoice: string) => {
    const { rows } = await f.t.db.withSystem((c) =>
      c.query<{ n: number }>(
        'SELECT count(*)::int AS n FROM payments p JOIN invoices i ON i.id = p.invoice_id WHERE i.number = $1',
        [invoice],
      ),
    );
    return rows[0]!.n;
  };

  beforeAll(async () => {
    f = await createFixture({ slug: 'hostile-keys' });
    await f.addMethod({ rail: 'stripe', token: 'pm_card_visa', last4: '4242' });
    await f.addInvoice('INV-K-ELICIT', 210_00);
    await f.addInvoice('INV-K-STDIO', 220_00);
    http = await startHttp(f.deps, { approvalWaitMs: 30_000, approvalPollMs: 20 });
    dataDir = await mkdtemp(path.join(tmpdir(), 'paygate-hostile-'));
  });
  afterAll(async () => {
    for (const c of clients) await c.close().catch(() => {});
    await http?.close();
    await f?.close();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  it('HTTP: a key disabled while its call waits for the human on the approval page does not pay', async () => {
    const { agentKey, key } = await f.newAgent({ name: 'elicit-then-disabled' });
    const c = await httpClient(http.url, key, { elicitation: { url: {} } });
    clients.push(c);
    c.setRequestHandler(ElicitRequestSchema, async (req) => {
      const id = (req.params as { url: string }).url.split('/').pop()!;
      // The admin disables the key (e.g. it leaked); a moment later the human, unaware, approves.
      setTimeout(() => {
        void disable(agentKey.id).then(() => approve(f.t.db, f.tenant.id, f.approver, id));
      }, 50);
      return { action: 'accept' };
    });
    const result = await c.callTool(pay('INV-K-ELICIT', '210.00'));
    // The key is refused on every new request at once...
    const fresh = await fetch(http.url, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${key}`,
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
      },
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 1,
        method: 'initialize',
        params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'x', version: '1' } },
      }),
    });
    expect(fresh.status).toBe(403);
    // ...so the call already in flight must not move money for it either.
    expect(result.isError, JSON.stringify(result.structuredContent)).toBe(true);
    expect(result.structuredContent).toMatchObject({ error: { code: 'agent_key_disabled' } });
    expect(await paymentsOf('INV-K-ELICIT')).toBe(0);
  });

  it('stdio: a key disabled after `paygate mcp` started no longer moves money', async () => {
    const { agentKey, key } = await f.newAgent({ name: 'stdio-then-disabled' });
    const client = new Client({ name: 'hostile-stdio', version: '1.0.0' });
    await client.connect(
      new StdioClientTransport({
        command: process.execPath,
        args: [CLI, 'mcp'],
        env: {
          PATH: process.env.PATH ?? '',
          HOME: process.env.HOME ?? '',
          DATABASE_URL: f.t.url,
          PAYGATE_DATA_DIR: dataDir,
          PAYGATE_LOG_LEVEL: 'warn',
          PAYGATE_PUBLIC_URL: `http://127.0.0.1:${await freePort()}`,
          PAYGATE_AGENT_KEY: key,
        },
        stderr: 'ignore',
      }),
    );
    clients.push(client);
    const ask = ok<Ask>(await client.callTool(pay('INV-K-STDIO', '220.00')));
    const token = (await approve(f.t.db, f.tenant.id, f.admin, ask.approval_id)).approvalToken!;
    // The admin disables the key before the agent comes back with the token.
    await disable(agentKey.id);
    const result = await client.callTool(pay('INV-K-STDIO', '220.00', { approval_token: token }));
    expect(result.isError, JSON.stringify(result.structuredContent)).toBe(true);
    expect(result.structuredContent).toMatchObject({ error: { code: 'agent_key_disabled' } });
    expect(await paymentsOf('INV-K-STDIO')).toBe(0);
    // Refused in the call's admission, so the refusal is on the audit log.
    const { rows: refusals } = await f.t.db.withSystem((c) =>
      c.query(
        `SELECT 1 FROM audit_log WHERE action = 'pay_invoice.refused' AND actor_id = $1
           AND content LIKE '%agent_key_disabled%'`,
        [agentKey.id],
      ),
    );
    expect(refusals).toHaveLength(1);
    // Reads are refused too from then on.
    const list = await client.callTool({ name: 'list_invoices', arguments: {} });
    expect(list.structuredContent).toMatchObject({ error: { code: 'agent_key_disabled' } });
  });
});
