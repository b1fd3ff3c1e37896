/**
 * POST /webhooks/stripe and /webhooks/paypal on plain `node:http`, ahead of the sidecar's Express app:
 * raw bytes in, verified before anything is parsed, then processWebhookEvent (webhooks.ts).
 *
 * Not Express routes on purpose, for the reason /mcp is not one (src/mcp/http.ts): Express swaps the
 * prototypes of every request and response it routes and computes an ETag for every answer, and a
 * provider's burst of events is the sidecar's hottest path. Answered here, one event costs the server
 * 0.2 to 0.3 ms less CPU (BENCHMARKS.md). Routing matches what Express did (src/request-path.ts); any
 * other method or path is left to the app.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import express from 'express';
import { requestErrorStatus } from '../errors.js';
import { createCertificateFetcher, verifyPaypalWebhook } from '../gateways/paypal/webhook.js';
import { verifyStripeWebhook } from '../gateways/stripe/webhook.js';
import { type WebhookEvent, WebhookVerificationError } from '../gateways/types.js';
import { requestPath } from '../request-path.js';
import type { SidecarMetrics } from './metrics.js';
import { processWebhookEvent } from './webhooks.js';

const BODY_LIMIT = '1mb';
type Provider = 'stripe' | 'paypal';
const ROUTES = new Map<string | null, Provider>([
  ['/webhooks/stripe', 'stripe'],
  ['/webhooks/paypal', 'paypal'],
]);

export interface WebhookRoutesConfig {
  deps: Parameters<typeof processWebhookEvent>[0];
  webhooks: { stripeSecret?: string; paypalWebhookId?: string };
  metrics: SidecarMetrics;
  logger: { warn(obj: object, msg?: string): void; error(obj: object, msg?: string): void };
  /** The clock webhooks are verified against (tolerance, certificate validity). */
  now: () => Date;
  /** Where PayPal certificates come from; default fetched from PayPal's hosts, cached in certCacheDir. */
  fetchCertificate?: (url: string) => Promise<string>;
  certCacheDir: string;
  /** The sandbox's loopback origin whose certificate is accepted. */
  paypalSandboxCertOrigin?: string;
}

export interface WebhookRoutes {
  /** True when the request is a webhook POST and is being answered; false (untouched) otherwise. */
  handle(req: IncomingMessage, res: ServerResponse): boolean;
}

/** Buffered by body-parser's raw reader (what express.raw is), which needs no Express app around it. */
type RawRequest = IncomingMessage & { body?: unknown };

function answer(res: ServerResponse, status: number, body: object): void {
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8' }).end(JSON.stringify(body));
}

export function createWebhookRoutes(config: WebhookRoutesConfig): WebhookRoutes {
  const { deps, webhooks, metrics, logger, now } = config;
  const sandboxCertOrigin = config.paypalSandboxCertOrigin;
  const fetchCertificate =
    config.fetchCertificate ??
    createCertificateFetcher({
      cacheDir: config.certCacheDir,
      ...(sandboxCertOrigin ? { sandboxCertOrigin } : {}),
    });
  const readRaw = express.raw({ type: () => true, limit: BODY_LIMIT });

  async function verify(provider: Provider, req: IncomingMessage, body: Buffer): Promise<WebhookEvent> {
    if (provider === 'stripe') {
      const signature = req.headers['stripe-signature'];
      return verifyStripeWebhook(
        body,
        typeof signature === 'string' ? signature : undefined,
        webhooks.stripeSecret ?? '',
        { now: now() },
      );
    }
    return verifyPaypalWebhook(body, req.headers, {
      webhookId: webhooks.paypalWebhookId ?? '',
      fetchCertificate,
      now,
      ...(sandboxCertOrigin ? { sandboxCertOrigin } : {}),
    });
  }

  async function receive(provider: Provider, req: RawRequest, res: ServerResponse): Promise<void> {
    const body = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
    let event: WebhookEvent;
    try {
      event = await verify(provider, req, body);
    } catch (error) {
      metrics.webhookEvents.inc({ provider, type: 'unverified', outcome: 'rejected' });
      const reason = error instanceof WebhookVerificationError ? error.message : 'verification failed';
      logger.warn({ provider, reason }, 'webhook refused: not verified');
      return answer(res, 400, { error: 'webhook_not_verified', message: reason });
    }
    try {
      const result = await processWebhookEvent(deps, event);
      metrics.webhookEvents.inc({ provider, type: event.type, outcome: result.outcome });
      if (result.outcome === 'unmatched') {
        logger.warn(
          { provider, eventId: event.eventId, type: event.type },
          'webhook for an unknown payment kept and alerted',
        );
      }
      answer(res, 200, { received: true, outcome: result.outcome });
    } catch (error) {
      metrics.webhookEvents.inc({ provider, type: event.type, outcome: 'failed' });
      logger.error(
        { provider, eventId: event.eventId, err: error },
        'webhook stored but not applied; the provider will retry',
      );
      answer(res, 500, { received: true, applied: false });
    }
  }

  /** body-parser's refusals (too large, unreadable) are the sender's: 4xx, so they are not retried forever. */
  function unreadable(error: unknown, res: ServerResponse): void {
    const status = requestErrorStatus(error);
    if (status) {
      const message = status === 413 ? 'the request body is too large' : 'the request body could not be read';
      answer(res, status, { error: 'bad_request', message });
    } else failed(error, res);
  }

  function failed(error: unknown, res: ServerResponse): void {
    logger.error({ err: error }, 'webhook request failed');
    if (!res.headersSent) answer(res, 500, { error: 'internal_error' });
  }

  return {
    handle(req, res) {
      if (req.method !== 'POST') return false;
      const provider = ROUTES.get(requestPath(req.url));
      if (!provider) return false;
      // Express caught a handler's synchronous throw; with no Express around this, one would end the process.
      try {
        readRaw(
          req as Parameters<typeof readRaw>[0],
          res as Parameters<typeof readRaw>[1],
          (error?: unknown) => {
            if (error) return unreadable(error, res);
            receive(provider, req, res).catch((err: unknown) => failed(err, res));
          },
        );
      } catch (error) {
        failed(error, res);
      }
      return true;
    },
  };
}
