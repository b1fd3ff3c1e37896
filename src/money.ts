/**
 * Money is an integer number of minor units plus an ISO 4217 currency. Amounts cross the agent and
 * CLI boundary as decimal strings ("500.00"); this module is the only place that converts, and it does
 * so on strings and integers alone: no floating point anywhere.
 */
import { CURRENCY_EXPONENTS } from './currencies.js';

/**
 * The largest amount we accept, in minor units: 999,999,999,999,999 (15 digits). It keeps every sum
 * of a day's payments well inside the exact integer range of JavaScript numbers (2^53) and of bigint
 * columns, and is far above any single invoice a provider will process.
 */
export const MAX_MINOR_UNITS = 999_999_999_999_999;

export interface Money {
  readonly amountMinor: number;
  readonly currency: string;
}

/** Why an amount or a currency was refused; the message says what was wrong and what to send instead. */
export class MoneyError extends Error {
  override readonly name = 'MoneyError';
}

export function isKnownCurrency(code: string): boolean {
  return Object.hasOwn(CURRENCY_EXPONENTS, code);
}

/** The minor-unit exponent of an ISO 4217 currency (USD 2, JPY 0, KWD 3). */
export function currencyExponent(currency: string): number {
  const exponent = CURRENCY_EXPONENTS[currency];
  if (exponent === undefined) {
    const hint = /^[a-z]{3}$/.test(currency)
      ? ` (currency codes are upper case: "${currency.toUpperCase()}")`
      : '';
    throw new MoneyError(
      `unknown currency "${currency}"${hint}: use an ISO 4217 code such as USD, EUR or JPY`,
    );
  }
  return exponent;
}

/** Normalise and check a currency code given by a human or an agent. Only exact upper-case codes pass. */
export function parseCurrency(input: string): string {
  currencyExponent(input);
  return input;
}

const DECIMAL = /^(0|[1-9][0-9]*)(?:\.([0-9]*))?$/;

/**
 * Parse a decimal string into minor units: "500.00" USD -> 50000, "1500" JPY -> 1500, "1.5" USD -> 150.
 * Refused: signs, exponent notation, spaces or padding, thousands separators, leading zeros, more
 * decimals than the currency has, zero, and anything above MAX_MINOR_UNITS.
 */
export function parseAmount(input: string, currency: string): number {
  const exponent = currencyExponent(currency);
  if (typeof input !== 'string' || input.length === 0) {
    throw new MoneyError(`amount is empty: give a decimal string such as "500.00"`);
  }
  const match = DECIMAL.exec(input);
  if (!match) {
    throw new MoneyError(
      `amount "${input}" is not a plain decimal: use digits with an optional point, such as "500.00" ` +
        '(no sign, spaces, separators, leading zeros or exponent)',
    );
  }
  const whole = match[1]!;
  const fraction = match[2] ?? '';
  if (match[2] !== undefined && fraction.length === 0) {
    throw new MoneyError(
      `amount "${input}" ends with a point: write "${whole}" or "${whole}.${'0'.repeat(exponent)}"`,
    );
  }
  if (fraction.length > exponent) {
    throw new MoneyError(
      exponent === 0
        ? `amount "${input}" has decimals, but ${currency} has no minor unit: give a whole number`
        : `amount "${input}" has ${fraction.length} decimals, but ${currency} has ${exponent}: round it yourself and send e.g. "${whole}.${fraction.slice(0, exponent)}"`,
    );
  }
  const digits = whole + fraction.padEnd(exponent, '0');
  if (digits.replace(/^0+/, '').length > String(MAX_MINOR_UNITS).length) {
    throw new MoneyError(
      `amount "${input}" ${currency} is above the maximum of ${formatAmount(MAX_MINOR_UNITS, currency)}`,
    );
  }
  const minor = Number(digits);
  if (minor > MAX_MINOR_UNITS) {
    throw new MoneyError(
      `amount "${input}" ${currency} is above the maximum of ${formatAmount(MAX_MINOR_UNITS, currency)}`,
    );
  }
  if (minor === 0) throw new MoneyError(`amount "${input}" is zero: an amount must be positive`);
  return minor;
}

/** Minor units back to the canonical decimal string: 50000 USD -> "500.00", 1500 JPY -> "1500". */
export function formatAmount(amountMinor: number, currency: string): string {
  const exponent = currencyExponent(currency);
  if (!Number.isSafeInteger(amountMinor) || amountMinor < 0) {
    throw new MoneyError(`amount ${amountMinor} is not a non-negative integer number of minor units`);
  }
  if (exponent === 0) return String(amountMinor);
  const digits = String(amountMinor).padStart(exponent + 1, '0');
  return `${digits.slice(0, -exponent)}.${digits.slice(-exponent)}`;
}

/** For people: "$500.00"-style text is locale-dependent, so we show "500.00 USD" everywhere. */
export function formatMoney(amountMinor: number, currency: string): string {
  return `${formatAmount(amountMinor, currency)} ${currency}`;
}

export function parseMoney(amount: string, currency: string): Money {
  const code = parseCurrency(currency);
  return { amountMinor: parseAmount(amount, code), currency: code };
}
