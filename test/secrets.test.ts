/**
 * secrets: after a full approval flow over MCP HTTP and the approval pages (including
 * refused tokens and a wrong step-up), no approval token, agent key, personal access token or bank
 * account number is in the database in clear, in the audit log, in tool results or in /metrics.
 */
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { approve } from '../src/approvals/approvals.js';
import { type HttpServer, httpClient, ok, startHttp } from './mcp/helpers.js';
import { type RunningSidecar, startSidecar } from './sidecar/support.js';
import { createFixture, type Fixture } from './support/fixture.js';

const ACCOUNT = '000123456789';

describe('secrets in clear', () => {
  let f: Fixture;
  let http: HttpServer;
  let side: RunningSidecar;
  let client: Client;
  const secrets: string[] = [];
  const results: string[] = [];

  beforeAll(async () => {
    f = await createFixture({ slug: 'secrets' });
    await f.addMethod({ rail: 'stripe', token: 'pm_card_visa', last4: '4242' });
    await f.addInvoice('INV-S-1', 321_00);
    http = await startHttp(f.deps);
    side = await startSidecar(f, {});
    client = await httpClient(http.url, f.agentKeySecret);
    secrets.push(f.agentKeySecret, f.admin.token, f.approver.token);

    const call = { invoice: 'INV-S-1', amount: '321.00', currency: 'USD', method: 'stripe' };
    const ask = ok<{ approval_id: string }>(await client.callTool({ name: 'pay_invoice', arguments: call }));
    const token = (await approve(f.t.db, f.tenant.id, f.admin, ask.approval_id)).approvalToken!;
    secrets.push(token);
    // Refused attempts: a well-formed wrong token, the right token with a wrong amount, a garbage token.
    const wrong = `apt_${'A'.repeat(43)}`;
    for (const args of [
      { ...call, approval_token: wrong },
      { ...call, amount: '321.01', approval_token: token },
      { ...call, approval_token: `${token}x` },
    ])
      results.push(JSON.stringify(await client.callTool({ name: 'pay_invoice', arguments: args })));
    results.push(
      JSON.stringify(
        await client.callTool({ name: 'pay_invoice', arguments: { ...call, approval_token: token } }),
      ),
    );
    // The replay of a used token.
    results.push(
      JSON.stringify(
        await client.callTool({ name: 'pay_invoice', arguments: { ...call, approval_token: token } }),
      ),
    );
    for (const [name, args] of [
      ['list_approvals', {}],
      ['list_invoices', {}],
      ['list_payment_methods', {}],
      ['get_payment_status', { invoice: 'INV-S-1' }],
    ] as const)
      results.push(JSON.stringify(await client.callTool({ name, arguments: args })));
  });
  afterAll(async () => {
    await client?.close().catch(() => {});
    await http?.close();
    await side?.close();
    await f?.close();
  });

  it('no secret in any tool result', () => {
    const all = results.join('\n');
    for (const s of secrets) expect(all).not.toContain(s);
    expect(all).not.toContain(ACCOUNT);
  });

  it('no secret in clear in any table (audit log, approvals, agent runs, counterparties, ...)', async () => {
    const { rows: tables } = await f.t.db.withSystem((c) =>
      c.query<{ table_name: string }>(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'",
      ),
    );
    for (const { table_name } of tables) {
      const { rows } = await f.t.db.withSystem((c) =>
        c.query<{ j: string }>(`SELECT row_to_json(t)::text AS j FROM "${table_name}" t`),
      );
      const dump = rows.map((r) => r.j).join('\n');
      for (const s of secrets) expect(dump, `${table_name} holds a secret in clear`).not.toContain(s);
      expect(dump, `${table_name} holds the bank account number in clear`).not.toContain(ACCOUNT);
    }
  });

  it('no secret on /metrics', async () => {
    const text = await (await fetch(`${side.url}/metrics`)).text();
    for (const s of secrets) expect(text).not.toContain(s);
    expect(text).not.toContain(ACCOUNT);
  });
});
