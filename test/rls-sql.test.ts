/**
 * Row-level security at the SQL level, as the pool's session role (paygate_app): every tenant table with
 * no tenant, another tenant, a malformed tenant; the functions paygate_app may execute; tables without RLS.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashSecret } from '../src/directory/credentials.js';
import { createFixture, type Fixture, payThroughEngine } from './support/fixture.js';

describe('RLS at the SQL level', () => {
  let a: Fixture;
  let b: Fixture;
  let app: pg.Client;
  let owner: pg.Client;
  let tenantTables: string[] = [];
  let paidPayment: { id: string; provider_reference: string };

  beforeAll(async () => {
    a = await createFixture({ slug: 'rls-a' });
    b = await createFixture({ slug: 'rls-b', t: a.t, sandbox: a.sandbox });
    await a.addMethod({ rail: 'stripe', token: 'pm_card_visa', label: 'Visa', brand: 'visa', last4: '4242' });
    const paid = await payThroughEngine(a, a.agentKey, {
      invoice: 'INV-RLS-1',
      amountMinor: 10_00,
      method: 'stripe',
    });
    app = new pg.Client({ connectionString: a.t.url, options: '-c role=paygate_app' });
    await app.connect();
    owner = new pg.Client({ connectionString: a.t.url });
    await owner.connect();
    const { rows } = await owner.query<{ table_name: string }>(
      `SELECT c.table_name FROM information_schema.columns c
         JOIN information_schema.tables t USING (table_schema, table_name)
        WHERE c.table_schema = 'public' AND c.column_name = 'tenant_id' AND t.table_type = 'BASE TABLE'
        ORDER BY 1`,
    );
    tenantTables = rows.map((r) => r.table_name);
    paidPayment = (
      await owner.query('SELECT id, provider_reference FROM payments WHERE id = $1', [
        (paid as { payment_id: string }).payment_id,
      ])
    ).rows[0];
  });
  afterAll(async () => {
    await app?.end();
    await owner?.end();
    await b?.close();
    await a?.close();
  });

  async function inTx<T>(tenant: string | null, fn: () => Promise<T>): Promise<T> {
    await app.query('BEGIN');
    try {
      if (tenant !== null) await app.query(`SELECT set_config('app.tenant_id', $1, true)`, [tenant]);
      return await fn();
    } finally {
      await app.query('ROLLBACK');
    }
  }

  it('every table with a tenant_id column has RLS enabled and a policy', async () => {
    expect(tenantTables.length).toBeGreaterThan(15);
    const { rows } = await owner.query<{ relname: string; relrowsecurity: boolean; policies: number }>(
      `SELECT c.relname, c.relrowsecurity, (SELECT count(*)::int FROM pg_policy p WHERE p.polrelid = c.oid) AS policies
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relname = ANY($1)`,
      [tenantTables],
    );
    const bad = rows.filter((r) => !r.relrowsecurity || r.policies === 0).map((r) => r.relname);
    expect(bad).toEqual([]);
  });

  it('tables paygate_app can read that have RLS off hold no tenant data', async () => {
    const { rows } = await owner.query<{ relname: string }>(
      `SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relkind = 'r' AND NOT c.relrowsecurity
          AND has_table_privilege('paygate_app', c.oid, 'SELECT') ORDER BY 1`,
    );
    expect(rows.map((r) => r.relname).sort()).toEqual(['ach_trace_sequences', 'currencies']);
  });

  it('with no app.tenant_id, every tenant table is empty to paygate_app', async () => {
    const seen: Record<string, number> = {};
    for (const table of tenantTables) {
      const n = await inTx(
        null,
        async () => (await app.query(`SELECT count(*)::int AS n FROM ${table}`)).rows[0].n,
      );
      if (n !== 0) seen[table] = n;
    }
    expect(seen).toEqual({});
    const t = await inTx(
      null,
      async () => (await app.query('SELECT count(*)::int AS n FROM tenants')).rows[0].n,
    );
    expect(t).toBe(0);
  });

  it("tenant B's id sees none of tenant A's rows in any table", async () => {
    const leaked: Record<string, number> = {};
    for (const table of tenantTables) {
      const n = await inTx(
        b.tenant.id,
        async () =>
          (await app.query(`SELECT count(*)::int AS n FROM ${table} WHERE tenant_id = $1`, [a.tenant.id]))
            .rows[0].n,
      );
      if (n !== 0) leaked[table] = n;
    }
    expect(leaked).toEqual({});
    // ...while A's own id sees its payment and audit rows (the check above is not vacuous).
    const own = await inTx(
      a.tenant.id,
      async () =>
        (
          await app.query(
            'SELECT (SELECT count(*) FROM payments)::int AS p, (SELECT count(*) FROM audit_log)::int AS l',
          )
        ).rows[0],
    );
    expect(own.p).toBe(1);
    expect(own.l).toBeGreaterThan(0);
  });

  it('a malformed app.tenant_id is an error, never rows', async () => {
    for (const bad of ['not-a-uuid', "' OR true --", '00000000-0000-0000-0000-00000000000g']) {
      await app.query('BEGIN');
      await app.query(`SELECT set_config('app.tenant_id', $1, true)`, [bad]);
      await expect(app.query('SELECT count(*) FROM payments')).rejects.toThrow(
        /invalid input syntax for type uuid/,
      );
      await app.query('ROLLBACK');
    }
    // A session-level setting left behind on a pooled connection is reset by ... nothing but the app;
    // at least, after a local setting, the next transaction sees nothing.
    await app.query('BEGIN');
    await app.query(`SELECT set_config('app.tenant_id', $1, true)`, [a.tenant.id]);
    await app.query('COMMIT');
    const n = await inTx(
      null,
      async () => (await app.query('SELECT count(*)::int AS n FROM payments')).rows[0].n,
    );
    expect(n).toBe(0);
  });

  it('paygate_app cannot insert rows for another tenant into any tenant table it may write', async () => {
    // audit_append_requests: the deferred trigger would append to A's chain.
    await app.query('BEGIN');
    await app.query(`SELECT set_config('app.tenant_id', $1, true)`, [b.tenant.id]);
    await expect(
      app.query(
        `INSERT INTO audit_append_requests (tenant_id, actor_type, actor_id, action, subject_id, content_before_at,
           content_between_at_and_seq, content_after_seq) VALUES ($1, '{x}', '{x}', '{x}', '{x}', '{x}', '{x}', '{x}')`,
        [a.tenant.id],
      ),
    ).rejects.toThrow(/row-level security/);
    await app.query('ROLLBACK');
    await app.query('BEGIN');
    await app.query(`SELECT set_config('app.tenant_id', $1, true)`, [b.tenant.id]);
    await expect(
      app.query(`INSERT INTO alerts (tenant_id, kind, message) VALUES ($1, 'x', 'x')`, [a.tenant.id]),
    ).rejects.toThrow(/row-level security|violates|null value|invalid input/);
    await app.query('ROLLBACK');
  });

  it("paygate_audit_append called by paygate_app in tenant B cannot append to tenant A's chain", async () => {
    const before = (
      await owner.query('SELECT count(*)::int AS n FROM audit_log WHERE tenant_id = $1', [a.tenant.id])
    ).rows[0].n;
    await app.query('BEGIN');
    await app.query(`SELECT set_config('app.tenant_id', $1, true)`, [b.tenant.id]);
    await expect(
      app.query(
        `SELECT paygate_audit_append($1, '{agent}', '{x}', '{forged}', '{x}', '{"{"}', '{","}', '{"}"}')`,
        [a.tenant.id],
      ),
    ).rejects.toThrow(/row-level security|duplicate key/);
    await app.query('ROLLBACK');
    // With no tenant at all.
    await app.query('BEGIN');
    await expect(
      app.query(
        `SELECT paygate_audit_append($1, '{agent}', '{x}', '{forged}', '{x}', '{"{"}', '{","}', '{"}"}')`,
        [a.tenant.id],
      ),
    ).rejects.toThrow(/row-level security|duplicate key/);
    await app.query('ROLLBACK');
    const after = (
      await owner.query('SELECT count(*)::int AS n FROM audit_log WHERE tenant_id = $1', [a.tenant.id])
    ).rows[0].n;
    expect(after).toBe(before);
  });

  it("paygate_admit_call in tenant B cannot record or count tenant A's agent's calls", async () => {
    await app.query('BEGIN');
    await app.query(`SELECT set_config('app.tenant_id', $1, true)`, [b.tenant.id]);
    await expect(
      app.query(
        `SELECT paygate_admit_call(42, '1s', gen_random_uuid(), $1, $2, 'pay_invoice', '{pay_invoice}', 60)`,
        [a.tenant.id, a.agentKey.id],
      ),
    ).rejects.toThrow(/row-level security/);
    await app.query('ROLLBACK');
  });

  it("paygate_admit and paygate_finish_run scope themselves to the tenant they are given, and refuse to switch another tenant's transaction", async () => {
    const runsOf = async (tenantId: string) =>
      (await owner.query('SELECT count(*)::int AS n FROM agent_runs WHERE tenant_id = $1', [tenantId]))
        .rows[0].n;
    const [beforeA, beforeB] = [await runsOf(a.tenant.id), await runsOf(b.tenant.id)];
    const admit = (tenantId: string, agentKeyId: string) =>
      app.query(
        `SELECT a.calls, (a.agent_key).id AS key_id, (a.tenant).id AS tenant_id
           FROM paygate_admit(42, '1s', gen_random_uuid(), $1, $2, 'pay_invoice', '{pay_invoice}') a`,
        [tenantId, agentKeyId],
      );
    // Inside tenant B's transaction, neither may act for tenant A (nor switch the transaction to A).
    for (const call of [
      () => admit(a.tenant.id, a.agentKey.id),
      () =>
        app.query(
          `SELECT paygate_finish_run(gen_random_uuid(), $1, $2, 'get_payment_status', 'ok', NULL, NULL, 1)`,
          [a.tenant.id, a.agentKey.id],
        ),
    ]) {
      await app.query('BEGIN');
      await app.query(`SELECT set_config('app.tenant_id', $1, true)`, [b.tenant.id]);
      await expect(call()).rejects.toThrow(/this transaction belongs to tenant/);
      await app.query('ROLLBACK');
    }
    // Inside tenant A's own transaction it only writes: the transaction still waits for the disk.
    await app.query('BEGIN');
    await app.query(`SELECT set_config('app.tenant_id', $1, true)`, [a.tenant.id]);
    await app.query(
      `SELECT paygate_finish_run(gen_random_uuid(), $1, $2, 'get_payment_status', 'ok', NULL, NULL, 1)`,
      [a.tenant.id, a.agentKey.id],
    );
    expect((await app.query('SHOW synchronous_commit')).rows[0].synchronous_commit).toBe('on');
    await app.query('ROLLBACK');
    // In autocommit, tenant B with tenant A's key: no key, so no admission and no row.
    expect((await admit(b.tenant.id, a.agentKey.id)).rows).toEqual([]);
    // Its own key in its own tenant: admitted, the key and tenant read under that tenant.
    expect((await admit(a.tenant.id, a.agentKey.id)).rows).toEqual([
      { calls: expect.any(Number), key_id: a.agentKey.id, tenant_id: a.tenant.id },
    ]);
    expect([await runsOf(a.tenant.id), await runsOf(b.tenant.id)]).toEqual([beforeA + 1, beforeB]);
    // The statement's transaction ended with it: nothing of tenant A's scope is left on the session.
    expect((await app.query(`SELECT current_setting('app.tenant_id', true) AS t`)).rows[0].t).toBe('');
  });

  it('paygate_agent_key_by_hash answers only an exact hash, never on NULL or a prefix', async () => {
    const rows = await inTx(
      null,
      async () => (await app.query('SELECT * FROM paygate_agent_key_by_hash(NULL)')).rows,
    );
    expect(rows).toEqual([]);
    const hash = hashSecret(a.agentKeySecret);
    const one = await inTx(
      b.tenant.id,
      async () => (await app.query('SELECT id FROM paygate_agent_key_by_hash($1)', [hash])).rows,
    );
    expect(one).toEqual([{ id: a.agentKey.id }]);
    const prefix = await inTx(
      null,
      async () =>
        (await app.query('SELECT id FROM paygate_agent_key_by_hash($1)', [hash.subarray(0, 16)])).rows,
    );
    expect(prefix).toEqual([]);
  });

  it('paygate_store_confirming_event stores only a confirmation of what a payment already is, once, and changes no payment', async () => {
    const store = async (eventId: string, status: string, reference: string | null) =>
      (
        await app.query(
          `SELECT paygate_store_confirming_event('stripe', $1, 'payment_intent.succeeded', '{}', $2, $3, $4, 'payment already ' || $3) AS tenant`,
          [eventId, paidPayment.id, status, reference],
        )
      ).rows[0].tenant;
    const payment = async () =>
      (await owner.query('SELECT status, provider_reference FROM payments WHERE id = $1', [paidPayment.id]))
        .rows[0];
    const before = await payment();
    expect(before.status).toBe('succeeded');
    // Another status, another reference: not a confirmation, nothing stored (the full path decides).
    expect(await store('evt_rls_failed', 'failed', paidPayment.provider_reference)).toBeNull();
    expect(await store('evt_rls_other_ref', 'succeeded', 'pi_not_ours')).toBeNull();
    // From no tenant at all (autocommit, as the sidecar calls it): stored in the payment's tenant.
    expect(await store('evt_rls_confirm', 'succeeded', paidPayment.provider_reference)).toBe(a.tenant.id);
    expect(await store('evt_rls_confirm', 'succeeded', paidPayment.provider_reference)).toBeNull();
    const { rows } = await owner.query(
      `SELECT event_id, tenant_id, outcome, processed_at IS NOT NULL AS processed FROM webhook_events
        WHERE event_id LIKE 'evt_rls_%'`,
    );
    expect(rows).toEqual([
      { event_id: 'evt_rls_confirm', tenant_id: a.tenant.id, outcome: 'ignored', processed: true },
    ]);
    expect(await payment()).toEqual(before);
  });

  it('no search_path hijack: paygate_app cannot create objects, and every SECURITY DEFINER function pins search_path', async () => {
    const priv = (
      await owner.query(
        `SELECT has_schema_privilege('paygate_app', 'public', 'CREATE') AS pub,
                has_database_privilege('paygate_app', current_database(), 'CREATE') AS db,
                has_database_privilege('paygate_app', current_database(), 'TEMP') AS tmp`,
      )
    ).rows[0];
    expect(priv.pub).toBe(false);
    const { rows } = await owner.query<{ proname: string; proconfig: string[] | null }>(
      `SELECT p.proname, p.proconfig FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = 'public' AND p.prosecdef`,
    );
    for (const r of rows) {
      expect(r.proconfig?.some((c) => c.startsWith('search_path='))).toBe(true);
      // pg_temp listed last (or absent implicitly first!).
      const sp = r.proconfig!.find((c) => c.startsWith('search_path='))!;
      expect(sp).toMatch(/pg_temp$/);
    }
    // A temp table named like the function's target cannot shadow it (pg_temp is last).
    await app.query('BEGIN');
    let shadowed = false;
    try {
      await app.query('CREATE TEMP TABLE agent_keys (LIKE public.agent_keys)');
      shadowed = true;
    } catch {
      // no TEMP privilege: fine too
    }
    if (shadowed) {
      const r = await app.query('SELECT id FROM paygate_agent_key_by_hash($1)', [
        hashSecret(a.agentKeySecret),
      ]);
      expect(r.rows).toEqual([{ id: a.agentKey.id }]);
    }
    await app.query('ROLLBACK');
  });

  it('executable functions: paygate_app may execute only the intended paygate_* functions', async () => {
    const { rows } = await owner.query<{ proname: string }>(
      `SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = 'public' AND p.proname LIKE 'paygate%' AND has_function_privilege('paygate_app', p.oid, 'EXECUTE')
        ORDER BY 1`,
    );
    // paygate_audit_append_requested is a trigger function; calling it directly is refused by PG anyway.
    expect(rows.map((r) => r.proname)).toEqual(
      expect.arrayContaining([
        'paygate_admit',
        'paygate_admit_call',
        'paygate_agent_key_by_hash',
        'paygate_bookkeeping_in',
        'paygate_finish_run',
        'paygate_audit_append',
        'paygate_current_tenant',
        'paygate_store_confirming_event',
      ]),
    );
  });
});
