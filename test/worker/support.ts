/** Helpers for the worker tests: schedules made the way an agent and a human make them, or in bulk. */
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { expect } from 'vitest';
import { isBusinessDay, nextBusinessDay, todayIn } from '../../src/payments/calendar.js';
import { type ApprovalRequired, schedulePayment } from '../../src/payments/pay.js';
import { CLI } from '../support/cli.js';
import type { Fixture } from '../support/fixture.js';

/**
 * An agent schedules, a human approves, the agent schedules again with the token: the real protocol. With
 * no date the schedule is due today; by ACH it is made for the first banking day from today (ACH may only
 * be scheduled on one) and, when that is a later day, moved to today by hand afterwards, so that these
 * tests of what the worker does with a due schedule run on any day of the year.
 */
export async function scheduleApproved(
  f: Fixture,
  agent: Fixture['agentKey'],
  invoice: string,
  amount: string,
  method: 'stripe' | 'paypal' | 'ach',
  date?: string,
): Promise<string> {
  const today = todayIn(f.tenant.timezone);
  const bankingDay = isBusinessDay(today) ? today : nextBusinessDay(today);
  const input = {
    invoice,
    amount,
    currency: 'USD',
    method,
    scheduled_date: date ?? (method === 'ach' ? bankingDay : today),
  };
  const ask = (await schedulePayment(f.deps, { agentKey: agent }, input)) as ApprovalRequired;
  expect(ask.status).toBe('approval_required');
  const token = await f.approveAs(f.admin, ask.approval_id);
  const done = (await schedulePayment(f.deps, { agentKey: agent }, { ...input, approval_token: token })) as {
    status: string;
  };
  expect(done.status).toBe('scheduled');
  const { rows } = await f.t.db.withTenant(f.tenant.id, (c) =>
    c.query<{ id: string }>(
      `SELECT s.id FROM scheduled_payments s JOIN invoices i ON i.id = s.invoice_id
        WHERE i.number = $1 AND s.status = 'scheduled'`,
      [invoice],
    ),
  );
  const id = rows[0]!.id;
  if (date === undefined && input.scheduled_date !== today) {
    await f.t.db.withTenant(f.tenant.id, (c) =>
      c.query('UPDATE scheduled_payments SET scheduled_date = $2 WHERE id = $1', [id, today]),
    );
  }
  return id;
}

/**
 * `count` approved schedules due today, inserted in three statements: invoices (already `scheduled`),
 * their consumed approvals, and the schedules. For the load test only, where 2,000 round trips through
 * the approval protocol would measure the seeding, not the worker; the protocol has its own tests.
 */
export async function seedDueSchedules(
  f: Fixture,
  count: number,
  options: { prefix: string; rail: 'stripe' | 'paypal' },
): Promise<void> {
  await f.t.db.withSystem(async (c) => {
    const { rows: ids } = await c.query<{ vendor: string; method: string }>(
      `SELECT (SELECT id FROM counterparties WHERE tenant_id = $1 LIMIT 1) AS vendor,
              (SELECT id FROM payment_methods WHERE tenant_id = $1 AND rail = $2 AND status = 'active') AS method`,
      [f.tenant.id, options.rail],
    );
    await c.query(
      `WITH inv AS (
         INSERT INTO invoices (tenant_id, number, counterparty_id, amount_minor, currency, status)
         SELECT $1, $2 || lpad(g::text, 5, '0'), $3, 1000 + g, 'USD', 'scheduled' FROM generate_series(1, $4) g
         RETURNING id, amount_minor),
       appr AS (
         INSERT INTO approvals (tenant_id, action, params, params_digest, agent_key_id, summary, amount_minor, currency,
                                status, token_hash, expires_at, decided_at, consumed_at)
         SELECT $1, 'schedule_payment', jsonb_build_object('invoice_id', inv.id, 'amount_minor', inv.amount_minor),
                sha256(convert_to(inv.id::text, 'UTF8')), $5, 'seeded for the load test', inv.amount_minor, 'USD',
                'consumed', sha256(convert_to('token ' || inv.id::text || $7, 'UTF8')), now() + interval '1 day', now(), now()
           FROM inv
         RETURNING id, (params->>'invoice_id')::uuid AS invoice_id, amount_minor)
       INSERT INTO scheduled_payments (tenant_id, invoice_id, agent_key_id, approval_id, amount_minor, currency, rail,
                                       payment_method_id, scheduled_date, approved_by)
       SELECT $1, invoice_id, $5, id, amount_minor, 'USD', $6, $8, (now() AT TIME ZONE 'UTC')::date,
              ARRAY['admin@example.com'] FROM appr`,
      [
        f.tenant.id,
        options.prefix,
        ids[0]!.vendor,
        count,
        f.agentKey.id,
        options.rail,
        randomUUID(),
        ids[0]!.method,
      ],
    );
  });
}

export interface ProcessResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Run the built CLI as its own process (a real crash needs a real process). */
export function runPaygate(
  args: string[],
  env: Record<string, string | undefined>,
  options: {
    onStdout?: (chunk: string) => void;
    onStderr?: (chunk: string) => void;
    onSpawn?: (pid: number) => void;
  } = {},
): Promise<ProcessResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], {
      env: { PATH: process.env.PATH, HOME: process.env.HOME, PAYGATE_LOG_LEVEL: 'warn', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
      options.onStdout?.(d.toString());
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
      options.onStderr?.(d.toString());
    });
    child.on('error', reject);
    if (child.pid) options.onSpawn?.(child.pid);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

/** The environment that points a paygate process at this fixture's database and sandbox. */
export function envFor(f: Fixture): Record<string, string> {
  return {
    DATABASE_URL: f.t.url,
    PAYGATE_SANDBOX_STRIPE_URL: f.sandbox.stripeUrl,
    PAYGATE_SANDBOX_PAYPAL_URL: f.sandbox.paypalUrl,
    PAYGATE_SECRET: 'test-secret',
  };
}
