import { describe, expect, it } from 'vitest';
import { ClaudeAnswerSchema } from '../../src/analysis/claude.js';
import { explainFailure } from '../../src/analysis/fallback.js';
import type { GatewayErrorCode } from '../../src/gateways/types.js';

const CODES: GatewayErrorCode[] = [
  'insufficient_funds',
  'payment_method_invalid',
  'declined',
  'rate_limited',
  'api_error',
  'network_timeout',
  'configuration_error',
];

describe('explainFailure', () => {
  it.each(CODES)('explains %s in the same shape and bounds as a Claude answer', (code) => {
    const analysis = explainFailure(code);
    expect(analysis.source).toBe('fallback');
    const { source: _source, ...answer } = analysis;
    expect(ClaudeAnswerSchema.safeParse(answer).success).toBe(true);
  });

  it('gives each code its own explanation', () => {
    const summaries = new Set(CODES.map((c) => explainFailure(c).summary));
    expect(summaries.size).toBe(CODES.length);
  });

  it('follows the rules for what a retry can do', () => {
    const retry = Object.fromEntries(CODES.map((c) => [c, explainFailure(c).retry_could_help]));
    expect(retry).toEqual({
      insufficient_funds: true,
      payment_method_invalid: false,
      declined: false,
      rate_limited: true,
      api_error: true,
      // The outcome is unknown: paying again before asking the provider could pay twice.
      network_timeout: false,
      configuration_error: false,
    });
    expect(explainFailure('network_timeout').next_step).toMatch(/Do not pay again/);
  });

  it('says when the automatic api_error retries are used up', () => {
    expect(explainFailure('api_error', { previousAttempts: 0 }).next_step).toMatch(/no action is needed/);
    expect(explainFailure('api_error', { previousAttempts: 2 }).next_step).toMatch(
      /All 3 automatic attempts failed/,
    );
  });

  it('explains a refund short of funds as the balance, not the payer', () => {
    expect(explainFailure('insufficient_funds', { kind: 'refund' }).summary).toMatch(/refund/);
  });

  it('has a default for codes outside the taxonomy', () => {
    const analysis = explainFailure('something_new');
    expect(analysis).toMatchObject({ source: 'fallback', retry_could_help: false });
    expect(analysis.summary).toMatch(/does not classify/);
  });
});
