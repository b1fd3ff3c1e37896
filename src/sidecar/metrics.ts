/**
 * Prometheus metrics of one paygate process. Each sidecar has its own Registry (not prom-client's
 * global one) so two apps in one process, as in tests, never collide on metric names.
 *
 * - paygate_payments: payments by status, read from the database at scrape time (the database is the
 *   truth; a counter in memory would disagree after a restart or with several processes).
 * - paygate_provider_request_seconds: latency of every gateway call, observed by wrapping the engine's
 *   `deps.gateway` (instrumentGateways), labelled by provider, operation and result.
 * - paygate_webhook_events_total: webhook deliveries by provider, event type and outcome.
 * - paygate_approval_decision_seconds: time from an approval request to a human's decision on the page.
 */
import client from 'prom-client';
import type { Db } from '../db/pool.js';
import { type Gateway, GatewayError, type Provider } from '../gateways/types.js';
import type { EngineDeps } from '../payments/context.js';

export interface SidecarMetrics {
  registry: client.Registry;
  providerLatency: client.Histogram<'provider' | 'operation' | 'result'>;
  webhookEvents: client.Counter<'provider' | 'type' | 'outcome'>;
  approvalDecision: client.Histogram<'decision'>;
}

export function createSidecarMetrics(db: Db): SidecarMetrics {
  const registry = new client.Registry();
  client.collectDefaultMetrics({ register: registry, prefix: 'paygate_' });
  new client.Gauge({
    name: 'paygate_payments',
    help: 'Payments by status, counted in the database at scrape time',
    labelNames: ['status'],
    registers: [registry],
    async collect() {
      // Across all tenants: the operator's view. Zero for statuses with no rows, so the series exist.
      const { rows } = await db.withSystem((c) =>
        c.query<{ status: string; n: number }>(
          'SELECT status, count(*)::int AS n FROM payments GROUP BY status',
        ),
      );
      this.reset();
      for (const status of ['processing', 'succeeded', 'failed']) this.set({ status }, 0);
      for (const row of rows) this.set({ status: row.status }, row.n);
    },
  });
  return {
    registry,
    providerLatency: new client.Histogram({
      name: 'paygate_provider_request_seconds',
      help: 'Latency of calls to payment providers (Stripe, PayPal, NACHA), including our retries',
      labelNames: ['provider', 'operation', 'result'],
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: [registry],
    }),
    webhookEvents: new client.Counter({
      name: 'paygate_webhook_events_total',
      help: 'Webhook deliveries by provider, event type and outcome (applied, ignored, unmatched, failed, duplicate, rejected)',
      labelNames: ['provider', 'type', 'outcome'],
      registers: [registry],
    }),
    approvalDecision: new client.Histogram({
      name: 'paygate_approval_decision_seconds',
      help: 'Time from an approval request to a human decision on the approval page',
      labelNames: ['decision'],
      buckets: [10, 30, 60, 300, 900, 3600, 4 * 3600, 12 * 3600, 24 * 3600],
      registers: [registry],
    }),
  };
}

const INSTRUMENTED = Symbol('paygate.instrumented');

function timed<T>(
  metrics: SidecarMetrics,
  provider: Provider,
  operation: string,
  call: () => Promise<T>,
): Promise<T> {
  const end = metrics.providerLatency.startTimer({ provider, operation });
  return call().then(
    (value) => {
      end({ result: 'ok' });
      return value;
    },
    (error: unknown) => {
      end({ result: error instanceof GatewayError ? error.code : 'error' });
      throw error;
    },
  );
}

function instrumentGateway(gateway: Gateway, metrics: SidecarMetrics): Gateway {
  return {
    provider: gateway.provider,
    pay: (request) => timed(metrics, gateway.provider, 'pay', () => gateway.pay(request)),
    retrieve: (lookup) => timed(metrics, gateway.provider, 'retrieve', () => gateway.retrieve(lookup)),
    refund: (request) => timed(metrics, gateway.provider, 'refund', () => gateway.refund(request)),
    retrieveRefund: (lookup) =>
      timed(metrics, gateway.provider, 'retrieve_refund', () => gateway.retrieveRefund(lookup)),
    noRecordConclusiveForMs: gateway.noRecordConclusiveForMs,
    amountProblem: (amount) => gateway.amountProblem(amount),
  };
}

/**
 * Wrap `deps.gateway` in place so every provider call the engine makes in this process (MCP tools,
 * worker, sidecar) is timed. In place on purpose: the runtime hands one `deps` object to every
 * component, and a copy would leave the others unobserved. Calling it twice wraps once.
 */
export function instrumentGateways(deps: EngineDeps, metrics: SidecarMetrics): void {
  const current = deps.gateway as EngineDeps['gateway'] & { [INSTRUMENTED]?: true };
  if (current[INSTRUMENTED]) return;
  const wrapped = ((provider: Provider) => {
    const gateway = current(provider);
    return gateway ? instrumentGateway(gateway, metrics) : undefined;
  }) as EngineDeps['gateway'] & { [INSTRUMENTED]?: true };
  wrapped[INSTRUMENTED] = true;
  deps.gateway = wrapped;
}
