/**
 * A payment made by NACHA (an ACH credit in a file we export) cannot be refunded through paygate: no
 * file of ours can pull the money back. refund_payment refuses it before any approval is asked, so no
 * human approves what cannot happen (it used to consume the approval and fail as configuration_error).
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listAchFiles } from '../../src/ach/files.js';
import { exportAchFile, setAchSettings, settleAchPayments } from '../../src/ach/index.js';
import { createSealer } from '../../src/directory/encryption.js';
import { RefusedError } from '../../src/errors.js';
import { getPayment } from '../../src/payments/payments.js';
import { refundPayment } from '../../src/payments/refund.js';
import { createFixture, type Fixture } from '../support/fixture.js';
import { odfiSettings, payByAch } from './support.js';

describe('refund of a NACHA payment', () => {
  let f: Fixture;
  let outDir: string;
  const sealer = createSealer('test-secret');

  beforeAll(async () => {
    f = await createFixture({ slug: 'ach-refund' });
    outDir = await fs.mkdtemp(path.join(os.tmpdir(), 'paygate-ach-refund-'));
    await f.addMethod({
      rail: 'ach',
      token: 'nacha:operating',
      provider: 'nacha',
      label: 'Operating account',
    });
    await setAchSettings(f.t.db, f.tenant.id, f.admin, sealer, odfiSettings);
  }, 120_000);
  afterAll(async () => {
    await fs.rm(outDir, { recursive: true, force: true });
    await f.close();
  });

  const approvals = async () =>
    (
      await f.t.db.withTenant(f.tenant.id, (c) =>
        c.query<{ n: number }>("SELECT count(*)::int AS n FROM approvals WHERE action = 'refund_payment'"),
      )
    ).rows[0]!.n;

  async function refused(payment: string): Promise<RefusedError> {
    const error = await refundPayment(f.deps, { agentKey: f.agentKey }, { payment, reason: 'overpaid' }).then(
      () => {
        throw new Error('the refund was not refused');
      },
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(RefusedError);
    return error as RefusedError;
  }

  it('a settled NACHA payment: refused up front with a way forward, and no approval is asked', async () => {
    await f.addInvoice('INV-ACH-R1', 300_00);
    const paymentId = await payByAch(f, 'INV-ACH-R1', '300.00');
    await exportAchFile({ db: f.t.db, sealer }, f.tenant.id, f.admin, { outDir });
    const [file] = await f.t.db.withTenant(f.tenant.id, (c) => listAchFiles(c));
    const dayAfter = new Date(new Date(`${file!.return_window_ends}T00:00:00Z`).getTime() + 24 * 3600 * 1000);
    await settleAchPayments(f.t.db, dayAfter);
    const payment = (await f.t.db.withTenant(f.tenant.id, (c) => getPayment(c, paymentId)))!;
    expect(payment.status).toBe('succeeded');

    const error = await refused(paymentId);
    expect(error.code).toBe('refund_not_supported');
    expect(error.message).toMatch(/NACHA/);
    expect(error.message).toContain(payment.confirmationNumber);
    expect(error.nextStep).toMatch(/vendor to return the funds.*reversal/);
    expect(await approvals()).toBe(0);
  });

  it('one still waiting for its file is refused the same way, not as "not completed"', async () => {
    await f.addInvoice('INV-ACH-R2', 75_00);
    const paymentId = await payByAch(f, 'INV-ACH-R2', '75.00');
    expect((await refused(paymentId)).code).toBe('refund_not_supported');
    expect(await approvals()).toBe(0);
  });
});
