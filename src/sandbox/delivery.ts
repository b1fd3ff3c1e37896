/**
 * Webhook delivery as a provider does it: events are POSTed asynchronously, some time after the API call
 * that caused them has answered (Stripe and PayPal typically deliver within seconds), so a webhook
 * normally finds the caller's own outcome already recorded. Each emulator has one sender, with one
 * keep-alive agent, as a provider reuses its connections to an endpoint.
 */
import http from 'node:http';
import https from 'node:https';

/** How long after the call that caused it an emulator delivers an event, unless told otherwise. */
export const DEFAULT_WEBHOOK_DELAY_MS = 200;

/** What became of one delivery: the endpoint's status, or why nothing was answered. */
export interface DeliveryRecord {
  status?: number;
  error?: string;
}

export interface WebhookSender {
  /**
   * POST to `url` after `delayMs`; `build` makes the headers and body at send time (a provider signs
   * each delivery attempt when it makes it). The answer is written into `record`.
   */
  send(
    url: string,
    delayMs: number,
    build: () => { headers: Record<string, string>; body: string | Buffer },
    record: DeliveryRecord,
  ): void;
  /** Resolves when every delivery started so far has been answered or has failed. */
  idle(): Promise<void>;
  /** No more waiting: deliveries not yet due are sent now, and every delivery is awaited. */
  close(): Promise<void>;
}

export function createWebhookSender(): WebhookSender {
  const httpAgent = new http.Agent({ keepAlive: true });
  const httpsAgent = new https.Agent({ keepAlive: true });
  const pending = new Set<Promise<void>>();
  // Deliveries not yet due: close() sends them at once rather than dropping them.
  const waiting = new Map<NodeJS.Timeout, () => void>();
  let closed = false;

  function post(url: string, headers: Record<string, string>, body: string | Buffer): Promise<number> {
    return new Promise((resolve, reject) => {
      const target = new URL(url);
      const secure = target.protocol === 'https:';
      const request = (secure ? https : http).request(target, {
        method: 'POST',
        agent: secure ? httpsAgent : httpAgent,
        headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) },
      });
      request.once('error', reject);
      request.once('response', (response) => {
        response.once('error', reject);
        response.once('end', () => resolve(response.statusCode ?? 0));
        response.resume();
      });
      request.end(body);
    });
  }

  async function idle(): Promise<void> {
    while (pending.size > 0) await Promise.allSettled([...pending]);
  }

  return {
    send(url, delayMs, build, record) {
      if (closed) {
        record.error = 'the emulator closed before this event';
        return;
      }
      const delivery = new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          waiting.delete(timer);
          resolve();
        }, delayMs);
        waiting.set(timer, resolve);
      })
        .then(() => {
          const { headers, body } = build();
          return post(url, headers, body);
        })
        .then((status) => {
          record.status = status;
        })
        .catch((error: unknown) => {
          record.error = error instanceof Error ? error.message : String(error);
        })
        .finally(() => pending.delete(delivery));
      pending.add(delivery);
    },
    idle,
    async close() {
      closed = true;
      for (const [timer, sendNow] of waiting) {
        clearTimeout(timer);
        sendNow();
      }
      waiting.clear();
      await idle();
      httpAgent.destroy();
      httpsAgent.destroy();
    },
  };
}
