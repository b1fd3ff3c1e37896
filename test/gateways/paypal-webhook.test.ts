/**
 * PayPal webhook verification against PayPal's own signed deliveries (captured from the webhook
 * simulator, ../shared/reference/paypal/events/*.delivery.json) and against the sandbox signer.
 */
import { mkdtemp, readdir, readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  createCertificateFetcher,
  signPaypalWebhook,
  verifyPaypalWebhook,
} from '../../src/gateways/paypal/webhook.js';
import { WebhookVerificationError } from '../../src/gateways/types.js';
import { createSandboxSigningIdentity } from '../../src/sandbox/paypal/certificate.js';
import { referenceRoot } from '../support/reference.js';

const eventsDir = path.join(referenceRoot, 'paypal/events');

interface Delivery {
  webhook_id: string;
  headers: Record<string, string>;
  raw_body: string;
  cert_pem: string;
}

async function loadDeliveries(): Promise<[string, Delivery][]> {
  const files = (await readdir(eventsDir)).filter((f) => f.endsWith('.delivery.json')).sort();
  return Promise.all(
    files.map(
      async (f) =>
        [f, JSON.parse(await readFile(path.join(eventsDir, f), 'utf8')) as Delivery] as [string, Delivery],
    ),
  );
}

const deliveries = await loadDeliveries();
/** The capture time: the transmission time PayPal signed. The certificate expired on 2025-03-07. */
const capturedAt = (d: Delivery) => () => new Date(d.headers['paypal-transmission-time']!);
/** Serves only the certificate that came with the capture, and only for its own URL. */
const ownCertificate = (d: Delivery) => async (url: string) => {
  if (url !== d.headers['paypal-cert-url']) throw new Error(`unexpected certificate fetch ${url}`);
  return d.cert_pem;
};

const expectedActions: Record<string, string> = {
  'PAYMENT.CAPTURE.COMPLETED': 'payment_succeeded',
  'PAYMENT.CAPTURE.DECLINED': 'payment_failed',
  'PAYMENT.CAPTURE.REFUNDED': 'refund_succeeded',
};

describe('real PayPal deliveries', () => {
  it('has the three captured deliveries', () => {
    expect(deliveries.map(([f]) => f)).toEqual([
      'PAYMENT.CAPTURE.COMPLETED.delivery.json',
      'PAYMENT.CAPTURE.DECLINED.delivery.json',
      'PAYMENT.CAPTURE.REFUNDED.delivery.json',
    ]);
  });

  for (const [file, d] of deliveries) {
    describe(file, () => {
      const body = Buffer.from(d.raw_body, 'utf8');
      const options = { webhookId: d.webhook_id, fetchCertificate: ownCertificate(d), now: capturedAt(d) };

      it('verifies against its own certificate with the clock at the capture time', async () => {
        const event = await verifyPaypalWebhook(body, d.headers, options);
        const parsed = JSON.parse(d.raw_body);
        expect(event.provider).toBe('paypal');
        expect(event.eventId).toBe(parsed.id);
        expect(event.action).toBe(expectedActions[parsed.event_type]);
      });

      it('refuses a forged body (one byte changed)', async () => {
        const forged = Buffer.from(d.raw_body.replace('"USD"', '"EUR"'), 'utf8');
        expect(forged.equals(body)).toBe(false);
        await expect(verifyPaypalWebhook(forged, d.headers, options)).rejects.toThrow(
          /signature does not match/,
        );
      });

      it('refuses a tampered transmission id', async () => {
        const headers = { ...d.headers, 'paypal-transmission-id': `${d.headers['paypal-transmission-id']}0` };
        await expect(verifyPaypalWebhook(body, headers, options)).rejects.toThrow(/signature does not match/);
      });

      it('refuses a tampered transmission time, even one second off', async () => {
        const shifted = new Date(capturedAt(d)().getTime() + 1_000).toISOString().replace(/\.\d{3}Z$/, 'Z');
        const headers = { ...d.headers, 'paypal-transmission-time': shifted };
        await expect(verifyPaypalWebhook(body, headers, options)).rejects.toThrow(/signature does not match/);
      });

      it('refuses a delivery with a signature header missing', async () => {
        const { 'paypal-transmission-sig': _dropped, ...headers } = d.headers;
        await expect(verifyPaypalWebhook(body, headers, options)).rejects.toThrow(
          /missing paypal-transmission-sig/,
        );
      });

      it('refuses another webhook id', async () => {
        await expect(
          verifyPaypalWebhook(body, d.headers, { ...options, webhookId: 'WH-OTHER' }),
        ).rejects.toThrow(/signature does not match/);
      });

      it('refuses a certificate URL on a foreign host without fetching it', async () => {
        let fetched = false;
        const headers = {
          ...d.headers,
          'paypal-cert-url': 'https://api.paypal.com.evil.example/v1/notifications/certs/X',
        };
        const fetchCertificate = async () => {
          fetched = true;
          return d.cert_pem;
        };
        await expect(verifyPaypalWebhook(body, headers, { ...options, fetchCertificate })).rejects.toThrow(
          /not one of PayPal's certificate URLs/,
        );
        await expect(
          verifyPaypalWebhook(
            body,
            { ...d.headers, 'paypal-cert-url': 'http://api.paypal.com/v1/notifications/certs/X' },
            { ...options, fetchCertificate },
          ),
        ).rejects.toThrow(WebhookVerificationError);
        expect(fetched).toBe(false);
      });

      it('refuses the expired certificate at the real time', async () => {
        // Pin the transmission tolerance out of the way so only the certificate's expiry can fail it.
        const now = () => new Date('2026-01-01T00:00:00Z');
        const headers = { ...d.headers };
        await expect(
          verifyPaypalWebhook(body, headers, { ...options, now, toleranceSeconds: 10 * 365 * 24 * 3600 }),
        ).rejects.toThrow(/certificate is not valid now/);
      });

      it('refuses a stale delivery even with a valid certificate', async () => {
        const later = () => new Date(new Date(d.headers['paypal-transmission-time']!).getTime() + 301_000);
        await expect(verifyPaypalWebhook(body, d.headers, { ...options, now: later })).rejects.toThrow(
          /tolerance/,
        );
      });

      it('refuses the body re-signed with another key under the same PayPal URL', async () => {
        const attacker = await createSandboxSigningIdentity({ now: capturedAt(d)() });
        const headers = signPaypalWebhook({
          rawBody: body,
          webhookId: d.webhook_id,
          privateKey: attacker.privateKey,
          certUrl: d.headers['paypal-cert-url']!,
          transmissionId: d.headers['paypal-transmission-id'],
          transmissionTime: capturedAt(d)(),
        });
        // PayPal's URL serves PayPal's certificate: the attacker's signature cannot match it.
        await expect(verifyPaypalWebhook(body, headers, options)).rejects.toThrow(/signature does not match/);
        // And the attacker's own certificate, served from PayPal's URL, is not issued to PayPal.
        await expect(
          verifyPaypalWebhook(body, headers, {
            ...options,
            fetchCertificate: async () => attacker.certificatePem,
          }),
        ).rejects.toThrow(/not issued to messageverificationcerts.paypal.com/);
      });
    });
  }

  it('maps the refund delivery to the refunded capture and the refund amount', async () => {
    const [, d] = deliveries.find(([f]) => f.startsWith('PAYMENT.CAPTURE.REFUNDED'))!;
    const event = await verifyPaypalWebhook(Buffer.from(d.raw_body), d.headers, {
      webhookId: d.webhook_id,
      fetchCertificate: ownCertificate(d),
      now: capturedAt(d),
    });
    expect(event.providerReference).toBe('0JF852973C016714D');
    expect(event.refund).toEqual({
      providerReference: '1Y107995YT783435V',
      amountMinor: 99,
      currency: 'USD',
    });
  });

  it('maps the declined delivery to a failure carrying our custom_id', async () => {
    const [, d] = deliveries.find(([f]) => f.startsWith('PAYMENT.CAPTURE.DECLINED'))!;
    const event = await verifyPaypalWebhook(Buffer.from(d.raw_body), d.headers, {
      webhookId: d.webhook_id,
      fetchCertificate: ownCertificate(d),
      now: capturedAt(d),
    });
    expect(event).toMatchObject({
      action: 'payment_failed',
      paymentId: 'CUSTOMID-1001',
      providerReference: '7U133281TB3277326',
      failure: { code: 'declined', providerCode: 'DECLINED' },
    });
  });
});

describe('certificate cache', () => {
  it('fetches once from an allowed URL and then serves from disk with no network', async () => {
    const [, d] = deliveries[0]!;
    const cacheDir = await mkdtemp(path.join(os.tmpdir(), 'paygate-certs-'));
    let calls = 0;
    const online = createCertificateFetcher({
      cacheDir,
      fetch: async () => {
        calls++;
        return { ok: true, status: 200, text: async () => d.cert_pem };
      },
    });
    const url = d.headers['paypal-cert-url']!;
    expect(await online(url)).toBe(d.cert_pem);
    const offline = createCertificateFetcher({
      cacheDir,
      fetch: async () => {
        throw new Error('offline');
      },
    });
    expect(await offline(url)).toBe(d.cert_pem);
    expect(calls).toBe(1);
    await expect(online('https://evil.example/v1/notifications/certs/X')).rejects.toThrow(
      WebhookVerificationError,
    );
    expect(calls).toBe(1);
  });

  it('fetches once when a burst of events first needs the same certificate', async () => {
    const [, d] = deliveries[0]!;
    const cacheDir = await mkdtemp(path.join(os.tmpdir(), 'paygate-certs-'));
    let calls = 0;
    const fetcher = createCertificateFetcher({
      cacheDir,
      fetch: async () => {
        calls++;
        await new Promise((resolve) => setTimeout(resolve, 20));
        return { ok: true, status: 200, text: async () => d.cert_pem };
      },
    });
    const url = d.headers['paypal-cert-url']!;
    const pems = await Promise.all(Array.from({ length: 8 }, () => fetcher(url)));
    expect(pems.every((pem) => pem === d.cert_pem)).toBe(true);
    expect(calls).toBe(1);
    expect((await readdir(cacheDir)).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });
});

describe('sandbox signer', () => {
  it('round-trips through the verifier only from the sandbox origin', async () => {
    const identity = await createSandboxSigningIdentity();
    const rawBody = Buffer.from(
      JSON.stringify({
        id: 'WH-1',
        event_type: 'PAYMENT.CAPTURE.PENDING',
        resource: { id: 'CAP1', custom_id: 'pay_1' },
      }),
    );
    const origin = 'http://127.0.0.1:45678';
    const headers = signPaypalWebhook({
      rawBody,
      webhookId: 'WH-SANDBOX',
      privateKey: identity.privateKey,
      certUrl: `${origin}/v1/notifications/certs/sandbox`,
    });
    const options = { webhookId: 'WH-SANDBOX', fetchCertificate: async () => identity.certificatePem };
    const event = await verifyPaypalWebhook(rawBody, headers, { ...options, sandboxCertOrigin: origin });
    expect(event).toMatchObject({
      action: 'payment_processing',
      paymentId: 'pay_1',
      providerReference: 'CAP1',
    });
    // Without sandbox mode the loopback URL is a foreign host.
    await expect(verifyPaypalWebhook(rawBody, headers, options)).rejects.toThrow(/not one of PayPal's/);
  });

  it('refuses an expired sandbox certificate', async () => {
    const identity = await createSandboxSigningIdentity({
      now: new Date('2020-01-01T00:00:00Z'),
      validDays: 1,
    });
    const rawBody = Buffer.from(
      JSON.stringify({ id: 'WH-2', event_type: 'PAYMENT.CAPTURE.COMPLETED', resource: {} }),
    );
    const origin = 'http://127.0.0.1:45678';
    const headers = signPaypalWebhook({
      rawBody,
      webhookId: 'W',
      privateKey: identity.privateKey,
      certUrl: `${origin}/v1/notifications/certs/sandbox`,
    });
    await expect(
      verifyPaypalWebhook(rawBody, headers, {
        webhookId: 'W',
        fetchCertificate: async () => identity.certificatePem,
        sandboxCertOrigin: origin,
      }),
    ).rejects.toThrow(/not valid now/);
  });
});
