/**
 * The sandbox's PayPal webhooks end to end on loopback: the emulator signs each capture/refund event,
 * POSTs it to a receiver, and the receiver verifies it with verifyPaypalWebhook, fetching the sandbox
 * certificate over HTTP through the disk-caching fetcher (sandbox mode), exactly as the sidecar will.
 */

import { randomUUID } from 'node:crypto';
import { mkdtemp } from 'node:fs/promises';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createPaypalGateway } from '../../src/gateways/paypal/client.js';
import { createCertificateFetcher, verifyPaypalWebhook } from '../../src/gateways/paypal/webhook.js';
import type { WebhookEvent } from '../../src/gateways/types.js';
import { type Sandbox, startSandbox } from '../../src/sandbox/index.js';

const WEBHOOK_ID = 'WH-SANDBOX-TEST';
let receiver: Server;
let sandbox: Sandbox;
const received: { body: Buffer; headers: IncomingHttpHeaders }[] = [];

beforeAll(async () => {
  receiver = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      received.push({ body: Buffer.concat(chunks), headers: req.headers });
      res.writeHead(200).end();
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
  const { port } = receiver.address() as AddressInfo;
  sandbox = await startSandbox({
    paypal: { webhookUrl: `http://127.0.0.1:${port}/webhooks/paypal`, webhookId: WEBHOOK_ID },
  });
});
afterAll(async () => {
  await sandbox.close();
  await new Promise<void>((resolve) => receiver.close(() => resolve()));
});

it('capture and refund events arrive signed and verify in sandbox mode only', async () => {
  const gateway = createPaypalGateway({ environment: 'sandbox', sandboxUrl: sandbox.paypalUrl });
  const paymentId = `pay_${randomUUID()}`;
  const paid = await gateway.pay({
    paymentId,
    tenantId: 't',
    amountMinor: 2_500,
    currency: 'USD',
    rail: 'paypal',
    paymentMethodToken: 'pp_vault_success',
    payee: { name: 'Acme', paypalEmail: 'billing@acme.example' },
    invoiceNumber: 'INV-1',
    description: 'Invoice INV-1',
  });
  const refunded = await gateway.refund({
    refundId: `ref_${randomUUID()}`,
    paymentId,
    tenantId: 't',
    paymentProviderReference: paid.providerReference,
    amountMinor: 1_000,
    currency: 'USD',
  });
  await sandbox.paypal.webhooksIdle();
  expect(sandbox.paypal.deliveries().map((d) => [d.type, d.status])).toEqual([
    ['PAYMENT.CAPTURE.COMPLETED', 200],
    ['PAYMENT.CAPTURE.REFUNDED', 200],
  ]);

  const cacheDir = await mkdtemp(path.join(os.tmpdir(), 'paygate-pp-certs-'));
  const fetchCertificate = createCertificateFetcher({ cacheDir, sandboxCertOrigin: sandbox.paypalUrl });
  const events: WebhookEvent[] = [];
  for (const { body, headers } of received) {
    events.push(
      await verifyPaypalWebhook(body, headers, {
        webhookId: WEBHOOK_ID,
        fetchCertificate,
        sandboxCertOrigin: sandbox.paypalUrl,
      }),
    );
  }
  // Deliveries run concurrently, so they may arrive in either order (PayPal promises no order either).
  events.sort((a, b) => a.action.localeCompare(b.action));
  expect(events.map((e) => [e.action, e.paymentId, e.providerReference])).toEqual([
    ['payment_succeeded', paymentId, paid.providerReference],
    ['refund_succeeded', undefined, paid.providerReference],
  ]);
  expect(events[1]!.refund).toEqual({
    providerReference: refunded.providerReference,
    amountMinor: 1_000,
    currency: 'USD',
  });

  // Outside sandbox mode the same delivery is refused: the loopback certificate URL is not PayPal's.
  const first = received[0]!;
  await expect(
    verifyPaypalWebhook(first.body, first.headers, {
      webhookId: WEBHOOK_ID,
      fetchCertificate: async () => sandbox.paypal.certificatePem,
    }),
  ).rejects.toThrow(/not one of PayPal's certificate URLs/);
  // And with another webhook id it does not verify.
  await expect(
    verifyPaypalWebhook(first.body, first.headers, {
      webhookId: 'WH-OTHER',
      fetchCertificate,
      sandboxCertOrigin: sandbox.paypalUrl,
    }),
  ).rejects.toThrow(/signature does not match/);
});
