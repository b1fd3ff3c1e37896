/** What counts as a card number where we refuse to store one, and where the analysis masks digits. */
import { expect, it } from 'vitest';
import { scrubText } from '../src/analysis/sanitize.js';
import { containsCardNumber } from '../src/directory/card-numbers.js';

it('a card number is found however it is written, next to other digits too', () => {
  for (const text of [
    '4242424242424242',
    'Visa 4242 4242 4242 4242 12/27',
    'Visa 4242-4242-4242-4242-123',
    'ref 1234 4242 4242 4242 4242',
    '４２４２ ４２４２ ４２４２ ４２４２',
    '4242\u00a04242\u00a04242\u00a04242',
    '4242\u20114242\u20114242\u20114242',
    '4242\u200b4242\u200b4242\u200b4242',
    '4242.4242.4242.4242',
    // Other scripts' digits, which NFKC keeps: Arabic-Indic, Extended Arabic-Indic, Devanagari, Bengali.
    '\u0664\u0662\u0664\u0662 \u0664\u0662\u0664\u0662 \u0664\u0662\u0664\u0662 \u0664\u0662\u0664\u0662',
    '\u06f4\u06f2\u06f4\u06f2\u06f4\u06f2\u06f4\u06f2\u06f4\u06f2\u06f4\u06f2\u06f4\u06f2\u06f4\u06f2',
    '\u096a\u0968\u096a\u0968-\u096a\u0968\u096a\u0968-\u096a\u0968\u096a\u0968-\u096a\u0968\u096a\u0968',
    '4242 \u09ea\u09e8\u09ea\u09e8 4242 4242',
  ])
    expect(containsCardNumber(text), text).toBe(true);
});

it('dates, times, phone numbers and provider ids are not taken for one', () => {
  for (const text of [
    'Paid 2026-11-26 12:00:00',
    'call +1 415 555 0199',
    'pm_1NvGfa2eZvKYlo2CyZ3kXq1M',
    'nacha:operating',
    'INV-2025-0001-7',
  ])
    expect(containsCardNumber(text), text).toBe(false);
});

it("other scripts' digits are read by their value: a number that fails the Luhn check is not one", () => {
  // 4242 4242 4242 4241 in Arabic-Indic digits: the last digit off by one.
  expect(
    containsCardNumber(
      '\u0664\u0662\u0664\u0662 \u0664\u0662\u0664\u0662 \u0664\u0662\u0664\u0662 \u0664\u0662\u0664\u0661',
    ),
  ).toBe(false);
});

it('the analysis masks a number written in Arabic-Indic digits', () => {
  const out = scrubText(
    'card \u0664\u0662\u0664\u0662\u0664\u0662\u0664\u0662\u0664\u0662\u0664\u0662\u0664\u0662\u0664\u0662',
    { allowEmail: false },
  );
  expect(out).toBe('card [number …4242]');
});

it('the analysis masks a number written with a non-breaking hyphen or joiners', () => {
  const out = scrubText('card 4242\u20114242\u20114242\u20114242', { allowEmail: false });
  expect(out).toBe('card [number …4242]');
});
