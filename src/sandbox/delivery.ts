/**
 * Webhook delivery as a provider does it: events are POSTed asynchronously, some time after the API call
 * that caused them has answered (Stripe and PayPal typically deliver within seconds), so a webhook
 * normally finds the caller's own outcome already recorded. Each emulator has one sender, with one
 * keep-alive agent, as a provider reuses its connections to an endpoint.
 */
import http from 'node:http';

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
  /** No more deliveries: those still waiting fail, those in flight are awaited. */
  close(): Promise<void>;
}

export function createWebhookSender(): WebhookSender {
  const agent = new http.Agent({ keepAlive: true });
  const pending = new Set<Promise<void>>();
  let closed = false;

  function post(url: string, headers: Record<string, string>, body: string | Buffer): Promise<number> {
    return new Promise((resolve, reject) => {
      const request = http.request(url, {
        method: 'POST',
        agent,
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

  return {
    send(url, delayMs, build, record) {
      const delivery = new Promise((resolve) => setTimeout(resolve, delayMs))
        .then(() => {
          if (closed) throw new Error('the emulator closed before delivering this event');
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
    async idle() {
      while (pending.size > 0) await Promise.allSettled([...pending]);
    },
    async close() {
      closed = true;
      await Promise.allSettled([...pending]);
      agent.destroy();
    },
  };
}
