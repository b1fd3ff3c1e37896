import { describe, expect, it } from 'vitest';
import { answerModeFor, estimateUsage, parseAnswer } from '../../src/analysis/claude.js';

describe('answerModeFor', () => {
  it.each([
    ['claude-sonnet-4-5', 'forced_tool'],
    ['claude-sonnet-4-5-20250929', 'forced_tool'],
    ['claude-sonnet-4-6', 'forced_tool'],
    ['claude-opus-4-1', 'forced_tool'],
    ['claude-haiku-4-5', 'forced_tool'],
    ['claude-3-7-sonnet-latest', 'forced_tool'],
    ['claude-sonnet-5', 'forced_tool'],
    // These answer a forced tool_choice with HTTP 400.
    ['claude-sonnet-5-5', 'json_schema'],
    ['claude-fable-5-1', 'json_schema'],
    // Unknown and newer: the safer guess.
    ['claude-mythos-5-2', 'json_schema'],
  ])('%s -> %s', (model, mode) => {
    expect(answerModeFor(model)).toBe(mode);
  });
});

describe('estimateUsage', () => {
  it('prices tokens in integer micro-dollars, cache included, rounding up', () => {
    expect(
      estimateUsage('claude-sonnet-4-5', {
        input_tokens: 1,
        output_tokens: 1,
        cache_creation_input_tokens: 1,
        cache_read_input_tokens: 1,
      }),
    ).toEqual({
      model: 'claude-sonnet-4-5',
      input_tokens: 1,
      output_tokens: 1,
      cache_creation_input_tokens: 1,
      cache_read_input_tokens: 1,
      // 3 + 15 + 3.75 + 0.3 = 22.05 micro-dollars, rounded up.
      cost_micro_usd: 23,
      price_known: true,
    });
  });

  it('says when it had to guess the price', () => {
    expect(estimateUsage('claude-sonnet-9', { input_tokens: 1000, output_tokens: 0 })).toMatchObject({
      price_known: false,
      cost_micro_usd: 2000,
    });
    expect(estimateUsage('some-other-model', {}).price_known).toBe(false);
  });
});

describe('parseAnswer', () => {
  it('refuses an answer cut short in the middle of its JSON', () => {
    const cut = parseAnswer(
      {
        content: [{ type: 'text', text: '{"summary": "The pay', citations: null }],
        stop_reason: 'max_tokens',
      },
      'json_schema',
    );
    expect(cut).toMatchObject({ ok: false, reason: 'malformed' });
  });
});
