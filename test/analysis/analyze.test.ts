/**
 * analyzeAlert end to end: the real SDK against a local fake of the Messages API, a real PostgreSQL.
 */
import fc from 'fast-check';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  ANALYSIS_TOOL,
  ANALYSIS_TOOL_NAME,
  ANSWER_JSON_SCHEMA,
  SYSTEM_PROMPT,
  systemPromptFor,
} from '../../src/analysis/claude.js';
import {
  analyzeAlert,
  analyzeAlertInBackground,
  explainFailure,
  type FailureContext,
  MAX_CONTEXT_BYTES,
  settleAnalyses,
} from '../../src/analysis/index.js';
import { createDb } from '../../src/db/pool.js';
import { createTestDatabase, type TestDatabase } from '../support/db.js';
import { failureArb, leaks } from './arbitraries.js';
import {
  DEFAULT_TOOL_INPUT,
  type FakeAnswer,
  type FakeMessagesApi,
  startFakeMessagesApi,
} from './fake-messages-api.js';

const API_KEY = 'sk-ant-api03-test-key-for-the-local-fake';
// Not the retiring claude-sonnet-4-5, for which the SDK prints a deprecation warning on every request.
const MODEL = 'claude-sonnet-4-6';
const withKey = { anthropic: { apiKey: API_KEY, model: MODEL } };

const context: FailureContext = {
  kind: 'payment',
  code: 'insufficient_funds',
  providerCode: 'insufficient_funds',
  provider: 'stripe',
  message:
    'Your card has insufficient funds. Card 4000 0000 0000 9995 declined for sk_test_abcDEF123456ghiJKL789',
  rail: 'stripe',
  amountMinor: 50_000,
  currency: 'USD',
  invoiceNumber: 'INV-2026-001',
  previousAttempts: 0,
  history: [{ at: '2026-11-26T09:00:00Z', status: 'processing' }],
};

let t: TestDatabase;
let fake: FakeMessagesApi;
let tenant: string;
let emailTenant: string;

async function newTenant(slug: string, allowEmail: boolean): Promise<string> {
  return t.db.withSystem(async (c) => {
    const r = await c.query<{ id: string }>(
      'INSERT INTO tenants (slug, name, allow_email_in_analysis) VALUES ($1, $1, $2) RETURNING id',
      [slug, allowEmail],
    );
    return r.rows[0]!.id;
  });
}

async function newAlert(tenantId: string, code = 'insufficient_funds'): Promise<string> {
  return t.db.withSystem(async (c) => {
    const r = await c.query<{ id: string }>(
      `INSERT INTO alerts (tenant_id, kind, code, message) VALUES ($1, 'payment_failed', $2, 'payment failed')
       RETURNING id`,
      [tenantId, code],
    );
    return r.rows[0]!.id;
  });
}

async function storedAnalysis(alertId: string): Promise<unknown> {
  return t.db.withSystem(async (c) => {
    const r = await c.query<{ analysis: unknown }>('SELECT analysis FROM alerts WHERE id = $1', [alertId]);
    return r.rows[0]?.analysis;
  });
}

interface RunRow {
  tenant_id: string;
  agent_key_id: string | null;
  tool: string;
  outcome: string;
  error_code: string | null;
  duration_ms: number;
  usage: Record<string, unknown> | null;
}

async function runsFor(alertId: string): Promise<RunRow[]> {
  return t.db.withSystem(async (c) => {
    const r = await c.query<RunRow>(
      `SELECT tenant_id, agent_key_id, tool, outcome, error_code, duration_ms, usage
       FROM agent_runs WHERE subject_id = $1 ORDER BY created_at`,
      [alertId],
    );
    return r.rows;
  });
}

/** The user message's text as Claude would read it (decoded from the JSON body). */
function userText(body: Record<string, unknown>): string {
  const messages = body.messages as Array<{ role: string; content: string }>;
  return messages.map((m) => m.content).join('\n');
}

function sentFailure(body: Record<string, unknown>): unknown {
  const match = /<failure_context>\n([\s\S]*)\n<\/failure_context>/.exec(userText(body));
  return (JSON.parse(match![1]!) as { failure: unknown }).failure;
}

beforeAll(async () => {
  t = await createTestDatabase();
  fake = await startFakeMessagesApi();
  tenant = await newTenant('acme', false);
  emailTenant = await newTenant('emails-ok', true);
});

afterAll(async () => {
  await fake?.close();
  await t?.drop();
});

beforeEach(() => {
  fake.requests.length = 0;
  fake.answer = () => ({
    kind: 'tool',
    input: DEFAULT_TOOL_INPUT,
    usage: { input_tokens: 812, output_tokens: 96 },
  });
});

describe('analyzeAlert with Claude answering', () => {
  it('sends one request of the agreed shape: model, forced tool, bounded output, system prompt', async () => {
    const alertId = await newAlert(tenant);
    await analyzeAlert(t.db, withKey, { tenantId: tenant, alertId }, context, { baseURL: fake.url });

    expect(fake.requests).toHaveLength(1);
    const [request] = fake.requests;
    expect(request!.method).toBe('POST');
    expect(request!.path).toBe('/v1/messages');
    const auth = `${request!.headers.authorization ?? ''} ${request!.headers['x-api-key'] ?? ''}`;
    expect(auth).toContain(API_KEY);
    expect(request!.headers['anthropic-version']).toBeTruthy();

    const body = request!.json;
    expect(body).toMatchObject({
      model: MODEL,
      max_tokens: 1024,
      system: SYSTEM_PROMPT,
      tools: [ANALYSIS_TOOL],
      tool_choice: { type: 'tool', name: ANALYSIS_TOOL_NAME },
    });
    expect(body.stream).toBeFalsy();
    expect(body.messages).toHaveLength(1);
    expect(sentFailure(body)).toEqual({
      kind: 'payment',
      code: 'insufficient_funds',
      provider_code: 'insufficient_funds',
      provider: 'stripe',
      message: 'Your card has insufficient funds. Card [number …9995] declined for [redacted]',
      rail: 'stripe',
      amount: '500.00',
      currency: 'USD',
      invoice_number: 'INV-2026-001',
      previous_attempts: 0,
      history: [{ at: '2026-11-26T09:00:00.000Z', status: 'processing' }],
    });
    expect(userText(body)).toContain(explainFailure('insufficient_funds').next_step);
    expect(request!.raw).not.toContain(API_KEY);
  });

  it('stores the parsed answer on the alert and records usage and cost in agent_runs', async () => {
    const alertId = await newAlert(tenant);
    const result = await analyzeAlert(t.db, withKey, { tenantId: tenant, alertId }, context, {
      baseURL: fake.url,
    });

    const expected = { ...DEFAULT_TOOL_INPUT, source: 'claude' };
    expect(result).toEqual({ status: 'analyzed', analysis: expected });
    expect(await storedAnalysis(alertId)).toEqual(expected);
    const runs = await runsFor(alertId);
    expect(runs).toHaveLength(1);
    expect(runs[0]).toMatchObject({
      tenant_id: tenant,
      agent_key_id: null,
      tool: 'analysis',
      outcome: 'analyzed',
    });
    expect(runs[0]!.error_code).toBeNull();
    expect(runs[0]!.duration_ms).toBeGreaterThanOrEqual(0);
    // Sonnet: $3 per million input tokens, $15 per million output tokens -> 812 * 3 + 96 * 15 micro-dollars.
    expect(runs[0]!.usage).toEqual({
      model: MODEL,
      input_tokens: 812,
      output_tokens: 96,
      cache_creation_input_tokens: 0,
      cache_read_input_tokens: 0,
      cost_micro_usd: 812 * 3 + 96 * 15,
      price_known: true,
    });
  });

  it('analyses an alert at most once, however many callers race for it', async () => {
    const alertId = await newAlert(tenant);
    const ref = { tenantId: tenant, alertId };
    const results = await Promise.all(
      Array.from({ length: 8 }, () => analyzeAlert(t.db, withKey, ref, context, { baseURL: fake.url })),
    );

    expect(results.filter((r) => r.status === 'analyzed')).toHaveLength(1);
    expect(results.filter((r) => r.status === 'already_analyzed')).toHaveLength(7);
    expect(fake.requests).toHaveLength(1);
    expect(await runsFor(alertId)).toHaveLength(1);
    expect(await storedAnalysis(alertId)).toMatchObject({ source: 'claude' });

    // Later calls find it done and ask nothing.
    expect(await analyzeAlert(t.db, withKey, ref, context, { baseURL: fake.url })).toEqual({
      status: 'already_analyzed',
    });
    expect(fake.requests).toHaveLength(1);
  });

  it('lets the payment flow move on: the fallback is visible at once, Claude replaces it later', async () => {
    const alertId = await newAlert(tenant);
    fake.answer = () => ({ kind: 'held', answer: { kind: 'tool', input: DEFAULT_TOOL_INPUT } });
    const arrived = fake.nextRequest();

    const returned = analyzeAlertInBackground(t.db, withKey, { tenantId: tenant, alertId }, context, {
      baseURL: fake.url,
    });
    expect(returned).toBeUndefined();

    await arrived;
    // Claude has not answered (the fake holds the response), yet the human already has an explanation.
    expect(await storedAnalysis(alertId)).toEqual(explainFailure('insufficient_funds', { kind: 'payment' }));
    fake.release();
    await settleAnalyses();
    expect(await storedAnalysis(alertId)).toEqual({ ...DEFAULT_TOOL_INPUT, source: 'claude' });
  });

  it("does not touch another tenant's alert", async () => {
    const alertId = await newAlert(emailTenant);
    const result = await analyzeAlert(t.db, withKey, { tenantId: tenant, alertId }, context, {
      baseURL: fake.url,
    });
    expect(result).toEqual({ status: 'alert_not_found' });
    expect(await storedAnalysis(alertId)).toBeNull();
    expect(fake.requests).toHaveLength(0);
  });

  it('sends email addresses only for a tenant that allows them', async () => {
    const withEmail = { ...context, message: 'PayPal account ap@vendor.example is restricted' };
    await analyzeAlert(t.db, withKey, { tenantId: tenant, alertId: await newAlert(tenant) }, withEmail, {
      baseURL: fake.url,
    });
    await analyzeAlert(
      t.db,
      withKey,
      { tenantId: emailTenant, alertId: await newAlert(emailTenant) },
      withEmail,
      {
        baseURL: fake.url,
      },
    );
    expect(fake.requests[0]!.raw).not.toContain('ap@vendor.example');
    expect(fake.requests[1]!.raw).toContain('ap@vendor.example');
  });
});

describe('analyzeAlert with a model that refuses forced tool choice (Claude Sonnet 5.5)', () => {
  const sonnet55 = { anthropic: { apiKey: API_KEY, model: 'claude-sonnet-5-5' } };

  it('asks for a JSON-schema answer instead, with low effort and room for thinking', async () => {
    fake.answer = () => ({ kind: 'text', text: JSON.stringify(DEFAULT_TOOL_INPUT) });
    const alertId = await newAlert(tenant);
    const result = await analyzeAlert(t.db, sonnet55, { tenantId: tenant, alertId }, context, {
      baseURL: fake.url,
    });

    const body = fake.requests[0]!.json;
    expect(body).toMatchObject({
      model: 'claude-sonnet-5-5',
      max_tokens: 4096,
      system: systemPromptFor('json_schema'),
      output_config: { effort: 'low', format: { type: 'json_schema', schema: ANSWER_JSON_SCHEMA } },
    });
    expect(body.tool_choice).toBeUndefined();
    expect(body.tools).toBeUndefined();
    expect(result).toEqual({ status: 'analyzed', analysis: { ...DEFAULT_TOOL_INPUT, source: 'claude' } });
    expect(await storedAnalysis(alertId)).toEqual({ ...DEFAULT_TOOL_INPUT, source: 'claude' });
    // Sonnet 5.5: $2 per million input tokens, $10 per million output tokens.
    expect((await runsFor(alertId))[0]!.usage).toMatchObject({
      cost_micro_usd: 100 * 2 + 50 * 10,
      price_known: true,
    });
  });

  it.each([
    ['text that is not JSON', 'The card was declined, probably.'],
    ['JSON of the wrong shape', JSON.stringify({ summary: 'Declined.', retry_could_help: 'no' })],
  ])('falls back on %s', async (_name, text) => {
    fake.answer = () => ({ kind: 'text', text });
    const alertId = await newAlert(tenant);
    const result = await analyzeAlert(t.db, sonnet55, { tenantId: tenant, alertId }, context, {
      baseURL: fake.url,
    });
    expect(result).toMatchObject({ status: 'fallback', reason: 'malformed' });
    expect(await storedAnalysis(alertId)).toEqual(explainFailure('insufficient_funds', { kind: 'payment' }));
  });
});

describe('analyzeAlert falls back to the deterministic explanation', () => {
  it('without an API key, asking nothing and recording no run', async () => {
    const alertId = await newAlert(tenant, 'declined');
    const declined = { ...context, code: 'declined' };
    const result = await analyzeAlert(
      t.db,
      { anthropic: { apiKey: undefined, model: MODEL } },
      { tenantId: tenant, alertId },
      declined,
      { baseURL: fake.url },
    );
    expect(result).toEqual({
      status: 'fallback',
      analysis: explainFailure('declined'),
      reason: 'no_api_key',
    });
    expect(await storedAnalysis(alertId)).toEqual(explainFailure('declined'));
    expect(fake.requests).toHaveLength(0);
    expect(await runsFor(alertId)).toEqual([]);
  });

  const cases: Array<{ name: string; answer: FakeAnswer; reason: string; requests: number; usage: boolean }> =
    [
      {
        name: 'a slow answer (timeout)',
        answer: { kind: 'slow', delayMs: 30_000, answer: { kind: 'tool', input: DEFAULT_TOOL_INPUT } },
        reason: 'timeout',
        requests: 1,
        usage: false,
      },
      {
        name: '529 overloaded, retried once',
        answer: { kind: 'error', status: 529, type: 'overloaded_error', message: 'Overloaded' },
        reason: 'overloaded',
        requests: 2,
        usage: false,
      },
      {
        name: '500, retried once',
        answer: { kind: 'error', status: 500, type: 'api_error', message: 'Internal server error' },
        reason: 'server_error',
        requests: 2,
        usage: false,
      },
      {
        name: 'an answer with no tool_use block',
        answer: { kind: 'text', text: 'The card was probably declined.' },
        reason: 'malformed',
        requests: 1,
        usage: true,
      },
      {
        name: 'a tool call of the wrong shape',
        answer: { kind: 'tool', input: { summary: 'Declined.', retry_could_help: 'maybe' } },
        reason: 'malformed',
        requests: 1,
        usage: true,
      },
      {
        name: 'a tool call missing a field',
        answer: {
          kind: 'tool',
          input: { summary: 'Declined.', likely_cause: 'The issuer said no.', retry_could_help: false },
        },
        reason: 'malformed',
        requests: 1,
        usage: true,
      },
      {
        name: 'a call to another tool',
        answer: { kind: 'tool', name: 'something_else', input: DEFAULT_TOOL_INPUT },
        reason: 'malformed',
        requests: 1,
        usage: true,
      },
      {
        name: 'a refusal',
        answer: { kind: 'tool', input: DEFAULT_TOOL_INPUT, stopReason: 'refusal' },
        reason: 'refused',
        requests: 1,
        usage: true,
      },
    ];

  it.each(cases)('on $name', async ({ answer, reason, requests, usage }) => {
    const alertId = await newAlert(tenant, 'api_error');
    const failing = { ...context, code: 'api_error', previousAttempts: 1 };
    fake.answer = () => answer;
    const result = await analyzeAlert(t.db, withKey, { tenantId: tenant, alertId }, failing, {
      baseURL: fake.url,
      timeoutMs: 200,
      maxRetries: 1,
    });

    const fallback = explainFailure('api_error', { kind: 'payment', previousAttempts: 1 });
    expect(result).toEqual({ status: 'fallback', analysis: fallback, reason });
    expect(await storedAnalysis(alertId)).toEqual(fallback);
    // A timeout is retried too (the SDK's policy); every case is bounded by maxRetries.
    expect(fake.requests).toHaveLength(reason === 'timeout' ? 2 : requests);
    const runs = await runsFor(alertId);
    expect(runs).toHaveLength(1);
    expect(runs[0]).toMatchObject({ tool: 'analysis', outcome: 'fallback', error_code: reason });
    if (usage) {
      // Claude answered, so tokens were spent and are counted even though the answer was unusable.
      expect(runs[0]!.usage).toMatchObject({ model: MODEL, input_tokens: 100, output_tokens: 50 });
    } else {
      expect(runs[0]!.usage).toEqual({ model: MODEL });
    }
  });

  it('and never throws, even when the database is gone', async () => {
    const closed = createDb(t.url);
    await closed.close();
    const result = await analyzeAlert(closed, withKey, { tenantId: tenant, alertId: tenant }, context, {
      baseURL: fake.url,
    });
    expect(result.status).toBe('error');
    expect(fake.requests).toHaveLength(0);
  });
});

describe('what leaves the process', () => {
  it('never carries a generated secret, token, full account number or disallowed email', async () => {
    await fc.assert(
      fc.asyncProperty(failureArb, async (failure) => {
        const tenantId = failure.allowEmail ? emailTenant : tenant;
        const alertId = await newAlert(tenantId);
        const before = fake.requests.length;
        const result = await analyzeAlert(t.db, withKey, { tenantId, alertId }, failure.context, {
          baseURL: fake.url,
        });
        expect(result.status).toBe('analyzed');
        expect(fake.requests).toHaveLength(before + 1);
        const request = fake.requests[before]!;
        // Both as sent and as decoded, so JSON escaping cannot hide a leak.
        expect(leaks(failure, request.raw)).toEqual([]);
        expect(leaks(failure, userText(request.json))).toEqual([]);
        expect(Buffer.byteLength(JSON.stringify(sentFailure(request.json)))).toBeLessThanOrEqual(
          MAX_CONTEXT_BYTES,
        );
      }),
      { numRuns: 100 },
    );
  });
});
