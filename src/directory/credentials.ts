/**
 * High-entropy secrets that are shown once and stored only as SHA-256 hashes: personal access tokens
 * of humans (`pgu_`), agent keys (`pgk_`) and approval tokens (`apt_`). 256 random bits each, so a plain
 * (unsalted) hash is enough: there is nothing to brute-force.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

export type SecretKind = 'pgu' | 'pgk' | 'apt';

export function newSecret(kind: SecretKind): string {
  return `${kind}_${randomBytes(32).toString('base64url')}`;
}

export function hashSecret(secret: string): Buffer {
  return createHash('sha256').update(secret, 'utf8').digest();
}

/** Whether a string has the shape of one of our secrets (so we can refuse it early and clearly). */
export function looksLike(kind: SecretKind, value: string): boolean {
  return new RegExp(`^${kind}_[A-Za-z0-9_-]{43}$`).test(value);
}

export function hashesEqual(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

/** The part of a secret safe to show so humans can tell keys apart. */
export function secretPrefix(secret: string): string {
  return secret.slice(0, 10);
}
