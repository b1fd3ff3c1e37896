/** Run the built `paygate` command as a user would, in a child process. */
import { execFile, spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const CLI = path.join(REPO_ROOT, 'dist/src/cli.js');
export const REFERENCE = path.resolve(REPO_ROOT, '../shared/reference');

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function runCli(
  args: string[],
  env: Record<string, string | undefined> = {},
  input?: string,
): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = execFile(
      process.execPath,
      [CLI, ...args],
      {
        env: { PATH: process.env.PATH, HOME: process.env.HOME, PAYGATE_LOG_LEVEL: 'warn', ...env },
        timeout: 60_000,
        maxBuffer: 16 * 1024 * 1024,
      },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === 'number' ? error.code : 1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
    if (input !== undefined) child.stdin?.end(input);
    else child.stdin?.end();
  });
}

/**
 * A long-running `paygate` command (serve, sandbox) started as a user would: `firstLine` is the first
 * line it prints on stdout (rejected if it exits first); `stop` sends SIGTERM and gives its exit code.
 */
export function startCli(args: string[]): { firstLine: Promise<string>; stop(): Promise<number | null> } {
  const child = spawn(process.execPath, [CLI, ...args], {
    env: { PATH: process.env.PATH, HOME: process.env.HOME, PAYGATE_LOG_LEVEL: 'warn' },
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
  let out = '';
  const firstLine = new Promise<string>((resolve, reject) => {
    child.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      if (out.includes('\n')) resolve(out.slice(0, out.indexOf('\n')));
    });
    child.on('exit', (code) => reject(new Error(`paygate ${args.join(' ')} exited with ${code}`)));
  });
  return {
    firstLine,
    stop: () => {
      child.kill('SIGTERM');
      return exited;
    },
  };
}

/** A CLI bound to one database, with helpers to set a tenant up the way an operator would. */
export function cliFor(databaseUrl: string, dataDir?: string) {
  const base = { DATABASE_URL: databaseUrl, PAYGATE_DATA_DIR: dataDir };
  const cli = (args: string[], env: Record<string, string | undefined> = {}) =>
    runCli(args, { ...base, ...env });
  const json = async <T = Record<string, unknown>>(
    args: string[],
    env: Record<string, string | undefined> = {},
  ): Promise<T> => {
    const result = await cli([...args, '--json'], env);
    if (result.code !== 0)
      throw new Error(`paygate ${args.join(' ')} exited ${result.code}: ${result.stderr}`);
    return JSON.parse(result.stdout) as T;
  };
  return { cli, json };
}
