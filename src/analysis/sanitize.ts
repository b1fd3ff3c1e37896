/**
 * What of a failure may leave the process for Claude. Everything that is free text (provider messages,
 * codes we did not mint, history notes, the invoice number) is scrubbed; only fields we format ourselves
 * from typed values (amount, currency, counts, timestamps, enums) pass as they are.
 *
 * Scrubbing is deliberately greedy: a lost word in an explanation costs nothing, a leaked key or account
 * number costs a great deal. What it removes, in order:
 *   1. credentials in URLs (`https://user:pass@host`), `Bearer`/`Basic` credentials;
 *   2. secrets with a known shape: Stripe `sk_`/`rk_`/`pk_` keys, `whsec_` webhook secrets, client secrets
 *      (`pi_..._secret_...`), our `apt_` approval tokens, `pgk_` agent keys and `pgu_`/`pat_` personal
 *      tokens, Anthropic `sk-ant-` keys, PayPal `A21AA` access tokens, JWTs;
 *   3. whatever follows a word naming a credential (token, secret, password, authorization, api key,
 *      credential, private key): after `:` or `=` the rest of the value, after a space the next word;
 *   4. email addresses, unless the tenant allows them;
 *   5. opaque strings that look generated (32+ characters of a key alphabet, or 20+ mixing letters and
 *      digits), which catches secrets of shapes we do not know, PayPal client secrets among them;
 *   6. runs of 8 or more digits (spaces or dashes between them allowed, so `4242 4242 4242 4242` counts),
 *      which become `[number …1234]`: card, account and routing numbers keep only their last four.
 *
 * Known limits: digits split by other characters (`4242.4242.4242.4242`) and secrets shorter than 20
 * characters with no telltale prefix or key word before them are not recognised.
 */
import { normalizeForNumbers } from '../directory/card-numbers.js';
import { formatAmount, isKnownCurrency } from '../money.js';
import type { FailureContext, FailureKind } from './types.js';

export const REDACTED = '[redacted]';
export const EMAIL_REDACTED = '[email]';
const TRUNCATED = '…[truncated]';

/** The whole context, as UTF-8 JSON, never exceeds this: the request stays small and cheap. */
export const MAX_CONTEXT_BYTES = 8 * 1024;
/** Input beyond this is cut before scrubbing so a huge provider message cannot make us slow. */
const MAX_RAW_CHARS = 16 * 1024;
const FIELD_LIMITS = {
  code: 64,
  providerCode: 128,
  message: 2000,
  invoiceNumber: 64,
  status: 64,
  note: 500,
} as const;
/** The most recent entries only: the latest attempts say most about this failure. */
const MAX_HISTORY = 20;

export interface ScrubOptions {
  /** The tenant's `allow_email_in_analysis`. */
  allowEmail: boolean;
}

/** The context as it is sent: snake_case JSON, every field bounded. */
export interface SanitizedFailure {
  kind: FailureKind;
  code: string;
  provider_code?: string;
  provider?: string;
  message: string;
  rail?: string;
  /** Decimal string in the currency's exponent, e.g. "500.00". */
  amount?: string;
  currency?: string;
  invoice_number?: string;
  previous_attempts?: number;
  reschedules?: number;
  history: Array<{ at?: string; status: string; note?: string }>;
}

// Boundaries: a secret may follow anything but a letter or digit (an underscore or quote before it still
// counts), so `key=sk_live_...` and `"sk_live_..."` are both caught.
const NB = '(?<![A-Za-z0-9])';
const URL_USERINFO = /\b([a-z][a-z0-9+.-]*:\/\/)[^\s/@:]+:[^\s/@]*@/gi;
const AUTH_SCHEME = /\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+/gi;
const KNOWN_SECRETS: RegExp[] = [
  new RegExp(`${NB}(?:sk|rk|pk)_(?:test|live)_[A-Za-z0-9]+`, 'g'),
  new RegExp(`${NB}whsec_[A-Za-z0-9+/=]+`, 'g'),
  new RegExp(`${NB}[A-Za-z0-9_]*_secret_[A-Za-z0-9]+`, 'g'),
  new RegExp(`${NB}(?:apt|pgk|pgu|pat)_[A-Za-z0-9_-]+`, 'g'),
  new RegExp(`${NB}sk-ant-[A-Za-z0-9_-]+`, 'g'),
  new RegExp(`${NB}A21AA[A-Za-z0-9_-]+`, 'g'),
  new RegExp(`${NB}eyJ[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]*`, 'g'),
];
// Bounded repetitions ({0,40}) keep the scan linear on long words.
const KEY_WORD =
  '[A-Za-z0-9_-]{0,40}(?:token|secret|password|passwd|authorization|api[_-]?key|apikey|credential|private[_-]?key)[A-Za-z0-9_-]{0,40}';
const KEY_VALUE = new RegExp(
  `(${KEY_WORD})(?:(["']?[ \\t]*[:=][ \\t]*)(?:"[^"\\n]*"?|'[^'\\n]*'?|[^\\n\\r,;&}]*)|(\\s+)([^\\s"',;&}]+))`,
  'gi',
);
/** After "token " these words are prose, not the token: "the token has expired" keeps its meaning. */
const PROSE_AFTER_KEY = new Set(
  (
    'a an the is was are were be been has had have not no for of in on and or to with from that this it ' +
    'cannot could must may might should will would does did expired invalid missing required provided ' +
    'supplied given used reused revoked unknown error type format mismatch verification failed'
  ).split(' '),
);
// The local part takes every character RFC 5322 allows unquoted, so no part of an unusual address is left.
const EMAIL =
  /[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})*\.[A-Za-z]{2,24}/g;
const OPAQUE = /[A-Za-z0-9+/=_-]{20,}/g;
/**
 * Error codes, prose identifiers and URL paths made of words (`card_declined`,
 * `PAYER_ACCOUNT_LOCKED_OR_CLOSED`, `docs/error-codes/card-declined`) are not secrets.
 */
const IDENTIFIER = /^[A-Za-z]{1,24}(?:[_/-][A-Za-z]{1,24})+$/;
const DIGIT_RUN = /\d(?:[ -]?\d){7,}/g;
const ISO_DATE = /^\d{4}-\d{2}-\d{2}$/;

function redactKeyValue(match: string, key: string, sep?: string, space?: string, word?: string): string {
  if (sep !== undefined) return `${key}${sep}${REDACTED}`;
  if (word !== undefined && PROSE_AFTER_KEY.has(word.toLowerCase())) return match;
  return `${key}${space ?? ' '}${REDACTED}`;
}

function redactOpaque(token: string): string {
  if (IDENTIFIER.test(token)) return token;
  if (token.length >= 32) return REDACTED;
  return /[A-Za-z]/.test(token) && /\d/.test(token) ? REDACTED : token;
}

function maskDigits(run: string): string {
  if (ISO_DATE.test(run)) return run;
  const digits = run.replace(/[ -]/g, '');
  return `[number …${digits.slice(-4)}]`;
}

/** Remove secrets, tokens, full numbers and (unless allowed) email addresses from one piece of text. */
export function scrubText(text: string, options: ScrubOptions): string {
  // Normalised first (full-width digits, Unicode spaces and dashes, invisible joiners), so a number
  // written with them is matched like any other; cut again after, as normalising can lengthen it.
  let out = normalizeForNumbers(text.length > MAX_RAW_CHARS ? text.slice(0, MAX_RAW_CHARS) : text).slice(
    0,
    MAX_RAW_CHARS,
  );
  out = out.replace(URL_USERINFO, `$1${REDACTED}@`);
  out = out.replace(AUTH_SCHEME, `$1 ${REDACTED}`);
  for (const pattern of KNOWN_SECRETS) out = out.replace(pattern, REDACTED);
  out = out.replace(KEY_VALUE, redactKeyValue);
  if (!options.allowEmail) out = out.replace(EMAIL, EMAIL_REDACTED);
  out = out.replace(OPAQUE, redactOpaque);
  out = out.replace(DIGIT_RUN, maskDigits);
  return out;
}

/** Cut to at most `max` characters without splitting a surrogate pair, saying that it was cut. */
export function truncate(text: string, max: number): string {
  if (text.length <= max) return text;
  const marker = max > TRUNCATED.length * 2 ? TRUNCATED : '';
  let end = Math.max(0, max - marker.length);
  const last = text.charCodeAt(end - 1);
  if (last >= 0xd800 && last <= 0xdbff) end -= 1;
  return text.slice(0, end) + marker;
}

function scrubField(value: string | undefined, limit: number, options: ScrubOptions): string | undefined {
  if (value === undefined) return undefined;
  // Scrub first, then cut: a cut made first could leave half a secret that no pattern recognises.
  const scrubbed = truncate(scrubText(value, options), limit).trim();
  return scrubbed === '' ? undefined : scrubbed;
}

const KINDS: ReadonlySet<string> = new Set(['payment', 'refund', 'scheduled_payment', 'webhook']);
const RAILS: ReadonlySet<string> = new Set(['stripe', 'paypal', 'ach']);
const PROVIDERS: ReadonlySet<string> = new Set(['stripe', 'paypal', 'nacha']);

function isCount(n: number | undefined): n is number {
  return n !== undefined && Number.isSafeInteger(n) && n >= 0;
}

function amountOf(context: FailureContext): { amount?: string; currency?: string } {
  const { amountMinor, currency } = context;
  if (currency === undefined || !/^[A-Z]{3}$/.test(currency) || !isKnownCurrency(currency)) return {};
  if (amountMinor === undefined || !Number.isSafeInteger(amountMinor) || amountMinor < 0) return { currency };
  return { amount: formatAmount(amountMinor, currency), currency };
}

function timestamp(at: string | Date): string | undefined {
  const date = at instanceof Date ? at : new Date(at);
  return Number.isNaN(date.getTime()) ? undefined : date.toISOString();
}

export function contextBytes(context: SanitizedFailure): number {
  return Buffer.byteLength(JSON.stringify(context), 'utf8');
}

/**
 * The failure as it may be sent: scrubbed, with each field bounded and the whole at most
 * MAX_CONTEXT_BYTES (older history goes first, then the message is shortened).
 */
export function sanitizeFailure(context: FailureContext, options: ScrubOptions): SanitizedFailure {
  const history = (context.history ?? []).slice(-MAX_HISTORY).map((entry) => {
    const at = timestamp(entry.at);
    const note = scrubField(entry.note, FIELD_LIMITS.note, options);
    return {
      ...(at !== undefined && { at }),
      status: scrubField(entry.status, FIELD_LIMITS.status, options) ?? 'unknown',
      ...(note !== undefined && { note }),
    };
  });
  const providerCode = scrubField(context.providerCode, FIELD_LIMITS.providerCode, options);
  const invoiceNumber = scrubField(context.invoiceNumber, FIELD_LIMITS.invoiceNumber, options);
  const sanitized: SanitizedFailure = {
    kind: KINDS.has(context.kind) ? context.kind : 'payment',
    code: scrubField(context.code, FIELD_LIMITS.code, options) ?? 'unknown',
    ...(providerCode !== undefined && { provider_code: providerCode }),
    ...(context.provider !== undefined && PROVIDERS.has(context.provider) && { provider: context.provider }),
    message: scrubField(context.message, FIELD_LIMITS.message, options) ?? '',
    ...(context.rail !== undefined && RAILS.has(context.rail) && { rail: context.rail }),
    ...amountOf(context),
    ...(invoiceNumber !== undefined && { invoice_number: invoiceNumber }),
    ...(isCount(context.previousAttempts) && { previous_attempts: context.previousAttempts }),
    ...(isCount(context.reschedules) && { reschedules: context.reschedules }),
    history,
  };
  while (contextBytes(sanitized) > MAX_CONTEXT_BYTES && sanitized.history.length > 0) {
    sanitized.history.shift();
  }
  while (contextBytes(sanitized) > MAX_CONTEXT_BYTES && sanitized.message.length > 0) {
    sanitized.message = truncate(sanitized.message, Math.floor(sanitized.message.length / 2));
  }
  return sanitized;
}
