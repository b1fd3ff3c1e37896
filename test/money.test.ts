import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CURRENCY_EXPONENTS } from '../src/currencies.js';
import { currencyExponent, formatAmount, MAX_MINOR_UNITS, MoneyError, parseAmount } from '../src/money.js';
import { createTestDatabase } from './support/db.js';

describe('money', () => {
  it("uses each currency's ISO 4217 exponent", () => {
    expect(parseAmount('500.00', 'USD')).toBe(50000);
    expect(parseAmount('500', 'USD')).toBe(50000);
    expect(parseAmount('1.5', 'USD')).toBe(150);
    expect(parseAmount('1500', 'JPY')).toBe(1500);
    expect(parseAmount('1.234', 'KWD')).toBe(1234);
    expect(parseAmount('0.0001', 'CLF')).toBe(1);
    expect(formatAmount(50000, 'USD')).toBe('500.00');
    expect(formatAmount(5, 'USD')).toBe('0.05');
    expect(formatAmount(1500, 'JPY')).toBe('1500');
    expect(formatAmount(1234, 'KWD')).toBe('1.234');
    expect(formatAmount(0, 'BHD')).toBe('0.000');
  });

  it.each([
    ['500.001', 'USD', /3 decimals, but USD has 2/],
    ['1.5', 'JPY', /JPY has no minor unit/],
    ['1e3', 'USD', /not a plain decimal/],
    ['-5.00', 'USD', /not a plain decimal/],
    ['+5.00', 'USD', /not a plain decimal/],
    [' 5.00', 'USD', /not a plain decimal/],
    ['5.00 ', 'USD', /not a plain decimal/],
    ['1,000.00', 'USD', /not a plain decimal/],
    ['05.00', 'USD', /not a plain decimal/],
    ['.50', 'USD', /not a plain decimal/],
    ['5.', 'USD', /ends with a point/],
    ['', 'USD', /empty/],
    ['0.00', 'USD', /zero/],
    ['NaN', 'USD', /not a plain decimal/],
    ['Infinity', 'USD', /not a plain decimal/],
    ['0x10', 'USD', /not a plain decimal/],
    ['10000000000000.00', 'USD', /above the maximum/],
    ['5.00', 'usd', /upper case: "USD"/],
    ['5.00', 'XYZ', /unknown currency "XYZ"/],
    ['5.00', '', /unknown currency/],
  ])('refuses %j %s with a message that says why', (amount, currency, message) => {
    expect(() => parseAmount(amount, currency)).toThrow(MoneyError);
    expect(() => parseAmount(amount, currency)).toThrow(message);
  });

  it('accepts exactly the maximum and nothing above it', () => {
    expect(parseAmount(formatAmount(MAX_MINOR_UNITS, 'USD'), 'USD')).toBe(MAX_MINOR_UNITS);
    expect(() => parseAmount('10000000000000.00', 'USD')).toThrow(/above the maximum/);
  });

  const currency = fc.constantFrom(...Object.keys(CURRENCY_EXPONENTS));

  it('round-trips every positive amount in every currency (property)', () => {
    fc.assert(
      fc.property(currency, fc.integer({ min: 1, max: MAX_MINOR_UNITS }), (code, minor) => {
        expect(parseAmount(formatAmount(minor, code), code)).toBe(minor);
      }),
      { numRuns: 2000 },
    );
  });

  it('parses any canonical decimal string back to the same string (property)', () => {
    fc.assert(
      fc.property(currency, fc.bigInt({ min: 1n, max: BigInt(MAX_MINOR_UNITS) }), (code, minor) => {
        const exponent = currencyExponent(code);
        const digits = minor.toString().padStart(exponent + 1, '0');
        const text = exponent === 0 ? digits : `${digits.slice(0, -exponent)}.${digits.slice(-exponent)}`;
        expect(formatAmount(parseAmount(text, code), code)).toBe(text);
      }),
    );
  });

  it('refuses any string with more decimals than the currency allows (property)', () => {
    fc.assert(
      fc.property(
        currency,
        fc.integer({ min: 1, max: 999_999 }),
        fc.integer({ min: 1, max: 9 }),
        (code, whole, extra) => {
          const exponent = currencyExponent(code);
          const text = `${whole}.${'0'.repeat(exponent)}${extra}`;
          expect(() => parseAmount(text, code)).toThrow(MoneyError);
        },
      ),
    );
  });

  it('knows the same currencies and exponents as the database', async () => {
    const t = await createTestDatabase();
    try {
      const { rows } = await t.db.withSystem((c) =>
        c.query<{ code: string; exponent: number }>('SELECT code, exponent FROM currencies'),
      );
      const fromDb = Object.fromEntries(rows.map((r) => [r.code, r.exponent]));
      expect(fromDb).toEqual(CURRENCY_EXPONENTS);
    } finally {
      await t.drop();
    }
  });
});
