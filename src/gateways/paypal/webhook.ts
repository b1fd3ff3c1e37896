/**
 * PayPal webhook verification, offline: PayPal signs
 *   `<transmission id>|<transmission time>|<webhook id>|<crc32 of the raw body, decimal>`
 * with SHA256withRSA, and says in PAYPAL-CERT-URL where its certificate is. We verify that signature
 * ourselves instead of calling /v1/notifications/verify-webhook-signature, so a webhook is checked
 * without a round trip and without credentials.
 *
 * What makes this safe is where the certificate may come from: only PayPal's own API hosts over https
 * (or, in sandbox mode, the local emulator's loopback URL), and for PayPal's hosts only a certificate
 * issued to messageverificationcerts.paypal.com. Anyone can sign a body with a key of their own; nobody
 * else can serve a certificate from api.paypal.com. The certificate must also be valid at verification
 * time, and fetched certificates are cached on disk so verification keeps working offline.
 */
import {
  createHash,
  sign as cryptoSign,
  verify as cryptoVerify,
  type KeyObject,
  randomUUID,
  X509Certificate,
} from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import CRC32 from 'crc-32';
import { type WebhookEvent, WebhookVerificationError } from '../types.js';
import { paypalWebhookToEvent } from './mapping.js';

/**
 * PayPal's API hosts, the only origins a production certificate is fetched from (PayPal documents
 * api.paypal.com / api.sandbox.paypal.com in PAYPAL-CERT-URL; api-m.* are its current API hostnames).
 */
export const PAYPAL_CERT_HOSTS: readonly string[] = [
  'api.paypal.com',
  'api-m.paypal.com',
  'api.sandbox.paypal.com',
  'api-m.sandbox.paypal.com',
];
/** The name PayPal's webhook-signing certificates are issued to. */
export const PAYPAL_CERT_SUBJECT = 'messageverificationcerts.paypal.com';
/** Path prefix of PayPal's certificate endpoint. */
const CERT_PATH_PREFIX = '/v1/notifications/certs/';
/** Same window as Stripe's: long enough for clock skew and slow delivery, short enough to stop replays. */
export const DEFAULT_TOLERANCE_SECONDS = 300;
export const PAYPAL_AUTH_ALGO = 'SHA256withRSA';

export type HeaderBag = Record<string, string | string[] | undefined>;

export interface VerifyPaypalWebhookOptions {
  /** The id PayPal gave our webhook subscription (PAYPAL_WEBHOOK_ID); part of what is signed. */
  webhookId: string;
  /** Returns the PEM at an already-checked URL; use createCertificateFetcher for the cached one. */
  fetchCertificate: (url: string) => Promise<string>;
  /** Verification time (certificate validity and transmission-time tolerance); default the clock. */
  now?: () => Date;
  /** Max age of the transmission; default 300 s. */
  toleranceSeconds?: number;
  /**
   * Sandbox mode only: the emulator's origin (http://127.0.0.1:PORT) whose self-signed certificate is
   * accepted. Never set with live credentials.
   */
  sandboxCertOrigin?: string;
}

function headerValue(headers: HeaderBag, name: string): string | undefined {
  const wanted = name.toLowerCase();
  for (const [key, value] of Object.entries(headers)) {
    if (key.toLowerCase() === wanted) return Array.isArray(value) ? value[0] : value;
  }
  return undefined;
}

function requireHeader(headers: HeaderBag, name: string): string {
  const value = headerValue(headers, name);
  if (!value) throw new WebhookVerificationError(`missing ${name} header: is this request from PayPal?`);
  return value;
}

/** crc32 of the raw bytes as PayPal writes it: unsigned, decimal. */
export function paypalCrc32(rawBody: Buffer): number {
  return CRC32.buf(rawBody) >>> 0;
}

export function paypalSignedMessage(
  transmissionId: string,
  transmissionTime: string,
  webhookId: string,
  rawBody: Buffer,
): string {
  return `${transmissionId}|${transmissionTime}|${webhookId}|${paypalCrc32(rawBody)}`;
}

/**
 * Decides whether a PAYPAL-CERT-URL may be fetched at all. Returns the kind of host it is, or throws.
 * Exported so the sidecar can log the refusal reason; the verifier calls it before any fetch.
 */
export function checkCertUrl(certUrl: string, sandboxCertOrigin?: string): 'paypal' | 'sandbox' {
  let url: URL;
  try {
    url = new URL(certUrl);
  } catch {
    throw new WebhookVerificationError(`PAYPAL-CERT-URL "${certUrl}" is not a URL`);
  }
  if (sandboxCertOrigin !== undefined && url.origin === new URL(sandboxCertOrigin).origin) {
    const host = url.hostname;
    if (url.protocol === 'http:' && (host === '127.0.0.1' || host === 'localhost' || host === '[::1]')) {
      return 'sandbox';
    }
    throw new WebhookVerificationError('the sandbox certificate origin must be http on loopback');
  }
  if (
    url.protocol !== 'https:' ||
    url.port !== '' ||
    url.username !== '' ||
    url.password !== '' ||
    !PAYPAL_CERT_HOSTS.includes(url.hostname) ||
    !url.pathname.startsWith(CERT_PATH_PREFIX)
  ) {
    throw new WebhookVerificationError(
      `PAYPAL-CERT-URL "${certUrl}" is not one of PayPal's certificate URLs (https://${PAYPAL_CERT_HOSTS.join(', https://')} under ${CERT_PATH_PREFIX}); refusing to trust it`,
    );
  }
  return 'paypal';
}

function parseCertificate(pem: string): X509Certificate {
  try {
    return new X509Certificate(pem);
  } catch {
    throw new WebhookVerificationError('the certificate at PAYPAL-CERT-URL is not a valid X.509 PEM');
  }
}

function issuedToPaypal(cert: X509Certificate): boolean {
  return cert.checkHost(PAYPAL_CERT_SUBJECT, { subject: 'always' }) === PAYPAL_CERT_SUBJECT;
}

/**
 * Verifies one delivery and reduces it to a WebhookEvent. Throws WebhookVerificationError, whose
 * message says what was wrong, for anything not proven to come from PayPal (or the sandbox).
 * Nothing from the body is parsed before the signature is checked.
 */
export async function verifyPaypalWebhook(
  rawBody: Buffer,
  headers: HeaderBag,
  options: VerifyPaypalWebhookOptions,
): Promise<WebhookEvent> {
  if (!Buffer.isBuffer(rawBody)) {
    throw new WebhookVerificationError('the body must be the raw bytes (a Buffer), not parsed JSON');
  }
  if (!options.webhookId)
    throw new WebhookVerificationError('no PayPal webhook id configured (PAYPAL_WEBHOOK_ID)');
  const transmissionId = requireHeader(headers, 'paypal-transmission-id');
  const transmissionTime = requireHeader(headers, 'paypal-transmission-time');
  const signature = requireHeader(headers, 'paypal-transmission-sig');
  const certUrl = requireHeader(headers, 'paypal-cert-url');
  const algo = headerValue(headers, 'paypal-auth-algo');
  if (algo !== undefined && algo !== PAYPAL_AUTH_ALGO) {
    throw new WebhookVerificationError(`unsupported PAYPAL-AUTH-ALGO "${algo}"; only ${PAYPAL_AUTH_ALGO}`);
  }

  const now = options.now?.() ?? new Date();
  const sentAt = Date.parse(transmissionTime);
  if (Number.isNaN(sentAt)) throw new WebhookVerificationError('PAYPAL-TRANSMISSION-TIME is not a date');
  const tolerance = (options.toleranceSeconds ?? DEFAULT_TOLERANCE_SECONDS) * 1000;
  if (Math.abs(now.getTime() - sentAt) > tolerance) {
    throw new WebhookVerificationError(
      `transmission time ${transmissionTime} is outside the ${tolerance / 1000} s tolerance: stale or replayed delivery`,
    );
  }

  const kind = checkCertUrl(certUrl, options.sandboxCertOrigin);
  const cert = parseCertificate(await options.fetchCertificate(certUrl));
  if (now < new Date(cert.validFrom) || now > new Date(cert.validTo)) {
    throw new WebhookVerificationError(
      `the PayPal certificate is not valid now (valid ${cert.validFrom} to ${cert.validTo})`,
    );
  }
  if (kind === 'paypal' && !issuedToPaypal(cert)) {
    throw new WebhookVerificationError(`the certificate is not issued to ${PAYPAL_CERT_SUBJECT}`);
  }

  const message = paypalSignedMessage(transmissionId, transmissionTime, options.webhookId, rawBody);
  const valid = cryptoVerify(
    'sha256',
    Buffer.from(message),
    cert.publicKey,
    Buffer.from(signature, 'base64'),
  );
  if (!valid) {
    throw new WebhookVerificationError(
      'PayPal signature does not match: wrong PAYPAL_WEBHOOK_ID, or the body or headers were altered',
    );
  }

  let payload: unknown;
  try {
    payload = JSON.parse(rawBody.toString('utf8'));
  } catch {
    throw new WebhookVerificationError('signed body is not JSON');
  }
  try {
    return paypalWebhookToEvent(payload);
  } catch (error) {
    throw new WebhookVerificationError((error as Error).message);
  }
}

export interface CertificateFetcherOptions {
  /** Directory for cached certificates (under the data directory); created if missing. */
  cacheDir: string;
  /** Default the global fetch; injectable so tests never touch the network. */
  fetch?: (
    url: string,
    init: { signal: AbortSignal },
  ) => Promise<{ ok: boolean; status: number; text(): Promise<string> }>;
  timeoutMs?: number;
  /** As in VerifyPaypalWebhookOptions: also allow this loopback origin. */
  sandboxCertOrigin?: string;
}

/**
 * fetchCertificate with a disk cache: the first delivery fetches the PEM (only from an allowed URL,
 * checked again here so this function is safe on its own), later ones read it from
 * `<cacheDir>/<sha256 of the URL>.pem`, including with no network at all.
 */
export function createCertificateFetcher(
  options: CertificateFetcherOptions,
): (url: string) => Promise<string> {
  const doFetch = options.fetch ?? ((url, init) => fetch(url, { ...init, redirect: 'error' }));
  // Events arrive in bursts: concurrent first uses of one certificate share one fetch.
  const inFlight = new Map<string, Promise<string>>();

  async function fetchAndCache(url: string, file: string): Promise<string> {
    const response = await doFetch(url, { signal: AbortSignal.timeout(options.timeoutMs ?? 10_000) });
    if (!response.ok) throw new WebhookVerificationError(`fetching ${url} answered HTTP ${response.status}`);
    const pem = await response.text();
    parseCertificate(pem);
    await mkdir(options.cacheDir, { recursive: true, mode: 0o700 });
    // A temporary name of this write's own (other processes may be caching the same certificate), then
    // an atomic rename, so a reader never sees half a file.
    const temp = `${file}.${process.pid}.${randomUUID()}.tmp`;
    await writeFile(temp, pem, { mode: 0o600 });
    await rename(temp, file);
    return pem;
  }

  return async (url: string) => {
    checkCertUrl(url, options.sandboxCertOrigin);
    const file = path.join(options.cacheDir, `${createHash('sha256').update(url).digest('hex')}.pem`);
    try {
      return await readFile(file, 'utf8');
    } catch {
      // Not cached yet: fetch below.
    }
    let fetching = inFlight.get(url);
    if (!fetching) {
      fetching = fetchAndCache(url, file).finally(() => inFlight.delete(url));
      inFlight.set(url, fetching);
    }
    return fetching;
  };
}

export interface SignPaypalWebhookInput {
  rawBody: Buffer;
  webhookId: string;
  privateKey: KeyObject;
  certUrl: string;
  transmissionId?: string;
  transmissionTime?: Date;
}

/**
 * Signs a body the way PayPal does and returns the headers to send with it. Used by the sandbox
 * emulator to deliver webhooks and by tests; the verifier above accepts its output only when the
 * certificate URL is the sandbox's own.
 */
export function signPaypalWebhook(input: SignPaypalWebhookInput): Record<string, string> {
  const transmissionId = input.transmissionId ?? randomUUID();
  // PayPal's format: seconds precision, Z suffix (2024-08-02T19:33:35Z).
  const transmissionTime = (input.transmissionTime ?? new Date()).toISOString().replace(/\.\d{3}Z$/, 'Z');
  const message = paypalSignedMessage(transmissionId, transmissionTime, input.webhookId, input.rawBody);
  const signature = cryptoSign('sha256', Buffer.from(message), input.privateKey).toString('base64');
  return {
    'paypal-transmission-id': transmissionId,
    'paypal-transmission-time': transmissionTime,
    'paypal-transmission-sig': signature,
    'paypal-cert-url': input.certUrl,
    'paypal-auth-algo': PAYPAL_AUTH_ALGO,
    'paypal-auth-version': 'v2',
    'content-type': 'application/json',
  };
}
