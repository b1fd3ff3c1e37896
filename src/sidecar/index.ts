/** The sidecar's public surface: the app, its metrics, and webhook processing (for tests and tools). */
export { createSidecarApp, type SidecarApp, type SidecarOptions, type SidecarRuntime } from './app.js';
export { createSidecarMetrics, instrumentGateways, type SidecarMetrics } from './metrics.js';
export { type ProcessedWebhook, processWebhookEvent, type WebhookOutcome } from './webhooks.js';
