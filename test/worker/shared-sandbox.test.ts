/**
 * `paygate sandbox` as its own process, shared by a worker process through PAYGATE_SANDBOX_*_URL: the
 * charge lands in that sandbox's ledger (read over HTTP), not in a private in-process one.
 */

import type { AddressInfo } from 'node:net';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LedgerEntry } from '../../src/sandbox/ledger.js';
import { deferred } from '../support/deferred.js';
import { createFixture, type Fixture } from '../support/fixture.js';
import { envFor, runPaygate, scheduleApproved } from './support.js';

describe('paygate sandbox shared by a worker process', () => {
  let f: Fixture;
  beforeAll(async () => {
    f = await createFixture();
    await f.addMethod({ rail: 'stripe', token: 'pm_card_visa', label: 'Visa', brand: 'visa', last4: '4242' });
  });
  afterAll(async () => f.close());

  it('prints its URLs, serves the worker, exposes its ledger, and exits 0 on SIGTERM', async () => {
    let pid = 0;
    let output = '';
    const ready = deferred();
    const sandboxProcess = runPaygate(
      ['sandbox'],
      {},
      {
        onSpawn: (p) => {
          pid = p;
        },
        onStdout: (chunk) => {
          output += chunk;
          if (output.includes('ledger: ')) ready.resolve();
        },
      },
    );
    await ready.promise;
    const url = (name: string) =>
      new RegExp(`^${name}: (http://127\\.0\\.0\\.1:\\d+\\S*)$`, 'm').exec(output)![1]!;
    const stripe = url('stripe');
    const paypal = url('paypal');
    const ledger = url('ledger');

    await f.addInvoice('SHARED-001', 321_00);
    const scheduledId = await scheduleApproved(f, f.agentKey, 'SHARED-001', '321.00', 'stripe');
    const worker = await runPaygate(['worker', '--once', '--json'], {
      ...envFor(f),
      PAYGATE_SANDBOX_STRIPE_URL: stripe,
      PAYGATE_SANDBOX_PAYPAL_URL: paypal,
    });
    expect(worker.code, worker.stderr).toBe(0);
    expect(JSON.parse(worker.stdout).scheduled).toMatchObject({ started: 1, paid: 1 });

    const { rows } = await f.t.db.withSystem((c) =>
      c.query<{ id: string }>('SELECT id FROM payments WHERE scheduled_payment_id = $1', [scheduledId]),
    );
    const { entries } = (await (await fetch(ledger)).json()) as { entries: LedgerEntry[] };
    expect(entries.filter((e) => e.paymentId === rows[0]!.id)).toMatchObject([
      { provider: 'stripe', kind: 'charge', amountMinor: 321_00, status: 'succeeded' },
    ]);
    // The fixture's own in-process sandbox saw nothing: the worker really used the shared one.
    expect(f.sandbox.ledger.charges(rows[0]!.id)).toHaveLength(0);

    process.kill(pid, 'SIGTERM');
    expect((await sandboxProcess).code).toBe(0);
  });

  it('a fixed port that is taken or not a port is refused, and the process exits rather than hanging', async () => {
    const taken = net.createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const { port } = taken.address() as AddressInfo;
    try {
      // The emulators are up by the time the ledger's port fails: they must be closed, or this waits forever.
      const ledgerTaken = await runPaygate(['sandbox', '--ledger-port', String(port)], {});
      expect(ledgerTaken.code).toBe(1);
      expect(ledgerTaken.stderr).toContain('EADDRINUSE');
      const stripeTaken = await runPaygate(['sandbox', '--stripe-port', String(port)], {});
      expect(stripeTaken.code).toBe(1);
    } finally {
      await new Promise<void>((resolve) => taken.close(() => resolve()));
    }
    for (const bad of ['abc', '99999', '-1', '80x']) {
      const result = await runPaygate(['sandbox', '--paypal-port', bad], {});
      expect(result.code, bad).toBe(2);
      expect(result.stderr).toContain('must be a port number');
    }
  });
});
