/**
 * We never store a card number. Anything a human or agent hands us that could be a primary account
 * number (13 to 19 digits passing the Luhn check) is refused before it reaches the database or a log
 * line: the digits run together or split by single spaces or dashes anywhere, or written in groups of 4
 * to 6 digits split by any short run of other characters ("4242.4242.4242.4242", "4242_4242…",
 * "4242  4242…", "4242/4242…"), with more digits before or after ("4242 4242 4242 4242 12/27"). Groups,
 * not any digit split by anything, so that dates and times ("2026-11-26 12:00") are not taken for one.
 * Text is normalised first (normalizeForNumbers), so full-width digits, other scripts' digits and
 * Unicode spaces and dashes are no way around it.
 */
const CANDIDATES = [/(?:\d[ -]?){12,18}\d/g, /(?:\d{4,6}[^A-Za-z0-9]{1,3}){2,4}\d{1,7}/g];

/**
 * A decimal digit of another script (Arabic-Indic ٤, Devanagari ४, Bengali ৪, …; NFKC keeps them) as
 * its ASCII digit. Unicode assigns decimal digits only in runs of ten, 0 to 9 in order, so a digit's
 * value is its distance from the start of its run (runs that touch are still ten each, hence mod 10).
 */
const DECIMAL_DIGIT = /\p{Nd}/u;

function asciiDigit(digit: string): string {
  const code = digit.codePointAt(0)!;
  let start = code;
  while (DECIMAL_DIGIT.test(String.fromCodePoint(start - 1))) start--;
  return String((code - start) % 10);
}

/**
 * The text as digits and separators are matched in it: NFKC (full-width digits and letters to ASCII,
 * Unicode spaces to a plain space), other scripts' decimal digits to ASCII, every dash (and the minus
 * sign) to '-', and invisible format characters (zero-width space and joiner, word joiner) removed.
 * The analysis scrubber uses it too.
 */
export function normalizeForNumbers(text: string): string {
  return text
    .normalize('NFKC')
    .replace(/[^\P{Nd}0-9]/gu, asciiDigit)
    .replace(/[\p{Cf}\u200b]/gu, '')
    .replace(/[\p{Pd}\u2212]/gu, '-')
    .replace(/\p{Zs}/gu, ' ');
}

function luhnValid(digits: string): boolean {
  let sum = 0;
  for (let i = 0; i < digits.length; i++) {
    let d = digits.charCodeAt(digits.length - 1 - i) - 48;
    if (i % 2 === 1) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
  }
  return sum % 10 === 0;
}

/** Whether whole consecutive groups of a candidate make 13 to 19 digits that pass the Luhn check. */
function holdsCardNumber(candidate: string): boolean {
  const groups = candidate.match(/\d+/g) ?? [];
  for (let start = 0; start < groups.length; start++) {
    let digits = '';
    for (let end = start; end < groups.length && digits.length + groups[end]!.length <= 19; end++) {
      digits += groups[end];
      if (digits.length >= 13 && luhnValid(digits)) return true;
    }
  }
  return false;
}

export function containsCardNumber(text: string): boolean {
  const normalized = normalizeForNumbers(text);
  for (const candidate of CANDIDATES) {
    for (const match of normalized.matchAll(candidate)) {
      if (holdsCardNumber(match[0])) return true;
    }
  }
  return false;
}
