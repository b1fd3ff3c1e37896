/** What the ACH workflow needs from its caller, and the small rules every part of it shares. */
import { advisoryLockKey, type Db } from '../db/pool.js';
import type { Sealer } from '../directory/encryption.js';
import type { FailureNotice } from '../payments/context.js';

export interface AchDeps {
  db: Db;
  /** Opens and seals bank account numbers (vendors', the offset account, stored file text). */
  sealer: Sealer;
  onAlert?: (notice: FailureNotice) => void;
}

/** A 64-bit advisory lock key (as a decimal string) for one named ACH critical section. */
export function achLockKey(name: string): string {
  return advisoryLockKey(`ach:${name}`);
}
