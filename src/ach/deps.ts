/** What the ACH workflow needs from its caller, and the small rules every part of it shares. */
import { advisoryLockKey, type Db } from '../db/pool.js';
import type { Sealer } from '../directory/encryption.js';
import type { User } from '../directory/users.js';
import { RefusedError } from '../errors.js';
import type { FailureNotice } from '../payments/context.js';

export interface AchDeps {
  db: Db;
  /** Opens and seals bank account numbers (vendors', the offset account, stored file text). */
  sealer: Sealer;
  onAlert?: (notice: FailureNotice) => void;
}

/** Sending files, importing returns and changing bank details are an admin's acts. */
export function requireAdmin(user: User, tenantId: string): void {
  if (user.tenantId !== tenantId || user.role !== 'admin') {
    throw new RefusedError(
      'admin_required',
      `${user.email} is not an admin of this tenant`,
      "use an admin's token",
    );
  }
}

/** A 64-bit advisory lock key (as a decimal string) for one named ACH critical section. */
export function achLockKey(name: string): string {
  return advisoryLockKey(`ach:${name}`);
}
