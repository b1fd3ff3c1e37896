/**
 * The environment every bench process runs with: sandbox mode whatever the shell has set (no provider
 * or Anthropic keys, so nothing leaves the machine), quiet logs, and a data directory of the run's own.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

let dataDir: string | undefined;

export function benchEnv(): NodeJS.ProcessEnv {
  dataDir ??= mkdtempSync(path.join(os.tmpdir(), 'paygate-bench-data-'));
  return {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    PAYGATE_LOG_LEVEL: 'warn',
    PAYGATE_DATA_DIR: dataDir,
  };
}

/** Remove the run's data directory (sandbox state, certificate cache) when the run ends. */
export function removeBenchDataDir(): void {
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  dataDir = undefined;
}
