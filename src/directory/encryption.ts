/**
 * Bank account numbers at rest: AES-256-GCM under a key derived from PAYGATE_SECRET (HKDF-SHA256), stored
 * as iv (12 bytes) || tag (16) || ciphertext. Without PAYGATE_SECRET (sandbox mode on the embedded
 * database) a random secret is generated once into the data directory (mode 0600); live keys require
 * PAYGATE_SECRET to be set (refused here and when a runtime starts).
 */
import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { type Config, requireSharedSecret } from '../config.js';

const INFO = 'paygate bank account numbers v1';
const DIGEST_INFO = 'paygate keyed digests v1';

export interface Sealer {
  seal(plaintext: string): Buffer;
  open(sealed: Buffer): string;
  /**
   * HMAC-SHA256 of `value` under a key derived from the same secret (its own HKDF label): equal values
   * give equal digests, so a table can find a duplicate by it, but without the secret nobody can test
   * guesses against it, which a plain hash of a bank account number (a few billion candidates) allows.
   */
  digest(value: string): Buffer;
}

export function createSealer(secret: string): Sealer {
  const key = Buffer.from(hkdfSync('sha256', secret, 'paygate', INFO, 32));
  const digestKey = Buffer.from(hkdfSync('sha256', secret, 'paygate', DIGEST_INFO, 32));
  return {
    digest(value) {
      return createHmac('sha256', digestKey).update(value, 'utf8').digest();
    },
    seal(plaintext) {
      const iv = randomBytes(12);
      const cipher = createCipheriv('aes-256-gcm', key, iv);
      const data = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
      return Buffer.concat([iv, cipher.getAuthTag(), data]);
    },
    open(sealed) {
      const decipher = createDecipheriv('aes-256-gcm', key, sealed.subarray(0, 12));
      decipher.setAuthTag(sealed.subarray(12, 28));
      return Buffer.concat([decipher.update(sealed.subarray(28)), decipher.final()]).toString('utf8');
    },
  };
}

/** PAYGATE_SECRET, or the data directory's generated one (created on first use). */
export async function resolveSecret(config: Pick<Config, 'live' | 'secret' | 'dataDir'>): Promise<string> {
  requireSharedSecret(config);
  if (config.secret) return config.secret;
  const file = path.join(config.dataDir, 'secret');
  try {
    return (await fs.readFile(file, 'utf8')).trim();
  } catch {
    await fs.mkdir(config.dataDir, { recursive: true });
    const secret = randomBytes(32).toString('base64url');
    try {
      await fs.writeFile(file, secret, { mode: 0o600, flag: 'wx' });
      return secret;
    } catch {
      // Another process wrote it first: use theirs.
      return (await fs.readFile(file, 'utf8')).trim();
    }
  }
}
