/**
 * Error analysis for alerts: optional, advisory, and never in the way of money.
 *
 * `analyzeAlert` first claims the alert by storing the deterministic fallback in `alerts.analysis`
 * where it is still NULL (one atomic UPDATE). Only the caller that made the claim may ask Claude, so
 * concurrent or repeated calls for one alert cost at most one request; the human sees the fallback at
 * once. When Claude answers well, the fallback is replaced by Claude's answer, but only while the stored
 * value is still that very fallback (compare-and-set), so nothing else's write is overwritten.
 *
 * It writes nothing but `alerts.analysis` and one `agent_runs` row per request to Claude, and it never
 * throws: a payment flow may start it and move on (`analyzeAlertInBackground`), or await it in tests.
 */
import type { Config, Logger } from '../config.js';
import type { Db } from '../db/pool.js';
import {
  type AnalysisUsage,
  askClaude,
  type ClaudeFailureReason,
  type ClaudeOptions,
  type ClaudeOutcome,
} from './claude.js';
import { explainFailure } from './fallback.js';
import { sanitizeFailure } from './sanitize.js';
import type { Analysis, FailureContext } from './types.js';

export type { AnalysisUsage, ClaudeFailureReason } from './claude.js';
export { explainFailure, type FallbackDetails, isTaxonomyCode } from './fallback.js';
export { MAX_CONTEXT_BYTES, type SanitizedFailure, sanitizeFailure, scrubText } from './sanitize.js';
export type { Analysis, AnalysisSource, FailureContext, FailureHistoryEntry, FailureKind } from './types.js';

export interface AlertRef {
  tenantId: string;
  alertId: string;
}

export interface AnalyzeOptions {
  /** The Messages API base URL (tests point it at a local fake); unset: ANTHROPIC_BASE_URL or Anthropic's. */
  baseURL?: string;
  timeoutMs?: number;
  maxRetries?: number;
  maxTokens?: number;
  logger?: Logger;
}

/** What happened, for callers and tests; the payment flow may ignore it. */
export type AnalyzeResult =
  /** Claude's answer is stored on the alert. */
  | { status: 'analyzed'; analysis: Analysis }
  /** The fallback is stored: no API key, or Claude failed for `reason`. */
  | { status: 'fallback'; analysis: Analysis; reason: ClaudeFailureReason | 'no_api_key' }
  /** The alert already had an analysis: nothing was asked, nothing was written. */
  | { status: 'already_analyzed' }
  | { status: 'alert_not_found' }
  /** Something unexpected (the database, most likely); logged, never thrown. */
  | { status: 'error'; message: string };

/** `agent_runs.outcome` for a request to Claude. */
export type AnalysisRunOutcome = 'analyzed' | 'fallback';

// SQL beside the code that runs it; every value is a parameter.
const sql = {
  tenantPolicy: 'SELECT allow_email_in_analysis FROM tenants WHERE id = $1',
  // The claim: exactly one caller turns NULL into the fallback.
  claim: `UPDATE alerts SET analysis = $2::jsonb WHERE id = $1 AND analysis IS NULL RETURNING id`,
  alertExists: 'SELECT 1 FROM alerts WHERE id = $1',
  // Compare-and-set: replace our own placeholder only.
  upgrade: `UPDATE alerts SET analysis = $2::jsonb WHERE id = $1 AND analysis = $3::jsonb`,
  recordRun: `INSERT INTO agent_runs (tenant_id, tool, outcome, error_code, subject_id, duration_ms, usage)
              VALUES ($1, 'analysis', $2, $3, $4, $5, $6::jsonb)`,
};

type Claim =
  | { claimed: true; allowEmail: boolean }
  | { claimed: false; status: 'already_analyzed' | 'alert_not_found' };

async function claimAlert(db: Db, ref: AlertRef, fallback: Analysis): Promise<Claim> {
  return db.withTenant(ref.tenantId, async (client) => {
    const tenant = await client.query<{ allow_email_in_analysis: boolean }>(sql.tenantPolicy, [ref.tenantId]);
    const policy = tenant.rows[0];
    if (policy === undefined) return { claimed: false, status: 'alert_not_found' };
    const claimed = await client.query(sql.claim, [ref.alertId, JSON.stringify(fallback)]);
    if (claimed.rowCount === 1) return { claimed: true, allowEmail: policy.allow_email_in_analysis };
    const exists = await client.query(sql.alertExists, [ref.alertId]);
    return { claimed: false, status: exists.rowCount === 1 ? 'already_analyzed' : 'alert_not_found' };
  });
}

async function recordOutcome(
  db: Db,
  ref: AlertRef,
  fallback: Analysis,
  outcome: ClaudeOutcome,
  model: string,
): Promise<void> {
  await db.withTenant(ref.tenantId, async (client) => {
    if (outcome.ok) {
      await client.query(sql.upgrade, [
        ref.alertId,
        JSON.stringify(outcome.analysis),
        JSON.stringify(fallback),
      ]);
    }
    const usage: AnalysisUsage | { model: string } = outcome.usage ?? { model };
    await client.query(sql.recordRun, [
      ref.tenantId,
      outcome.ok ? 'analyzed' : 'fallback',
      outcome.ok ? null : outcome.reason,
      ref.alertId,
      outcome.durationMs,
      JSON.stringify(usage),
    ]);
  });
}

/**
 * Analyse one alert's failure and store the result on it, at most once per alert. Call it after the
 * transaction that created the alert has committed. Resolves, never rejects.
 */
export async function analyzeAlert(
  db: Db,
  config: Pick<Config, 'anthropic'>,
  ref: AlertRef,
  context: FailureContext,
  options: AnalyzeOptions = {},
): Promise<AnalyzeResult> {
  try {
    const fallback = explainFailure(context.code, {
      kind: context.kind,
      previousAttempts: context.previousAttempts,
    });
    const claim = await claimAlert(db, ref, fallback);
    if (!claim.claimed) return { status: claim.status };

    const apiKey = config.anthropic.apiKey;
    if (apiKey === undefined || apiKey === '')
      return { status: 'fallback', analysis: fallback, reason: 'no_api_key' };

    const failure = sanitizeFailure(context, { allowEmail: claim.allowEmail });
    const claudeOptions: ClaudeOptions = {
      apiKey,
      model: config.anthropic.model,
      baseURL: options.baseURL,
      timeoutMs: options.timeoutMs,
      maxRetries: options.maxRetries,
      maxTokens: options.maxTokens,
      logger: options.logger,
    };
    const policy = {
      summary: fallback.summary,
      next_step: fallback.next_step,
      retry_could_help: fallback.retry_could_help,
    };
    const outcome = await askClaude(failure, policy, claudeOptions);
    await recordOutcome(db, ref, fallback, outcome, config.anthropic.model);
    if (outcome.ok) return { status: 'analyzed', analysis: outcome.analysis };
    options.logger?.warn(
      { alert_id: ref.alertId, reason: outcome.reason, detail: outcome.detail },
      'error analysis fell back to the deterministic explanation',
    );
    return { status: 'fallback', analysis: fallback, reason: outcome.reason };
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    options.logger?.warn(
      { alert_id: ref.alertId, err: message },
      'error analysis failed; the alert stands without it',
    );
    return { status: 'error', message };
  }
}

const inFlight = new Set<Promise<AnalyzeResult>>();

/**
 * Start `analyzeAlert` and return at once: what the payment flow calls. The promise is kept so that a
 * process about to close its pool can `await settleAnalyses()` first.
 */
export function analyzeAlertInBackground(
  db: Db,
  config: Pick<Config, 'anthropic'>,
  ref: AlertRef,
  context: FailureContext,
  options: AnalyzeOptions = {},
): void {
  const run = analyzeAlert(db, config, ref, context, options).finally(() => inFlight.delete(run));
  inFlight.add(run);
}

/** Wait for every background analysis started in this process (before closing the database pool). */
export async function settleAnalyses(): Promise<void> {
  await Promise.allSettled([...inFlight]);
}
