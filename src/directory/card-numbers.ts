/**
 * We never store a card number. Anything a human or agent hands us that could be a primary account
 * number (13 to 19 digits passing the Luhn check) is refused before it reaches the database or a log
 * line: the digits run together or split by single spaces or dashes anywhere, or written in groups of 4
 * to 6 digits split by any short run of other characters ("4242.4242.4242.4242", "4242_4242…",
 * "4242  4242…", "4242/4242…"). Groups, not any digit split by anything, so that dates and times
 * ("2026-11-26 12:00") are not taken for one.
 */
const CANDIDATES = [/(?:\d[ -]?){12,18}\d/g, /(?:\d{4,6}[^A-Za-z0-9]{1,3}){2,4}\d{1,7}/g];

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

export function containsCardNumber(text: string): boolean {
  for (const candidate of CANDIDATES) {
    for (const match of text.matchAll(candidate)) {
      const digits = match[0].replace(/\D/g, '');
      if (digits.length >= 13 && digits.length <= 19 && luhnValid(digits)) return true;
    }
  }
  return false;
}
