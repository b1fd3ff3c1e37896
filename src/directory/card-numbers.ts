/**
 * We never store a card number. Anything a human or agent hands us that could be a primary account
 * number (13 to 19 digits, optionally grouped by spaces or dashes, passing the Luhn check) is refused
 * before it reaches the database or a log line.
 */
const CANDIDATE = /(?:\d[ -]?){12,18}\d/g;

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
  for (const match of text.matchAll(CANDIDATE)) {
    const digits = match[0].replace(/[ -]/g, '');
    if (digits.length >= 13 && digits.length <= 19 && luhnValid(digits)) return true;
  }
  return false;
}
