/**
 * The server under test as a child process: the built `paygate serve`, or with BENCH_SERVER=serve-mcp
 * bench/serve-mcp.ts (the same runtime, sidecar and MCP handler in one process, counting its SQL). Its peak RSS is read
 * from /proc (VmHWM: the high-water mark over the process's whole life).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { benchEnv } from './env.js';

const distRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export interface ServerChild {
  url: string;
  /** 'paygate serve' or 'bench/serve-mcp' */
  kind: string;
  pid: number;
  /** Peak resident set size so far, in MB. */
  peakRssMb(): number;
  /** Stop it; resolves with what bench/serve-mcp reports of its SQL (undefined for paygate serve). */
  stop(): Promise<{ statements: number; transactions: number } | undefined>;
}

function readStatusKb(pid: number, field: string): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status);
  return match ? Number(match[1]) : Number.NaN;
}

/**
 * BENCH_PROFILE_DIR=/some/dir: the server writes a V8 CPU profile there when it stops (node --cpu-prof).
 * BENCH_PERF=1: the server writes /tmp/perf-<pid>.map for `perf record -a -g` around the bench, which
 * samples CPU time (the V8 profile samples wall time, so a socket write the kernel preempts looks costly).
 */
export function profileFlags(): string[] {
  // BENCH_NODE_FLAGS: more flags for the server's node, to try a V8 setting (`--trace-gc`, heap sizes).
  const extra = process.env.BENCH_NODE_FLAGS?.split(' ').filter(Boolean) ?? [];
  if (process.env.BENCH_PERF) return [...extra, '--perf-basic-prof', '--interpreted-frames-native-stack'];
  const dir = process.env.BENCH_PROFILE_DIR;
  return dir ? [...extra, '--cpu-prof', '--cpu-prof-dir', dir] : extra;
}

interface Started {
  child: ChildProcess;
  url: string;
  kind: string;
  output(): string;
}

function start(args: string[], kind: string, env: NodeJS.ProcessEnv): Promise<Started> {
  const child = spawn(process.execPath, [...profileFlags(), ...args], {
    env: { ...benchEnv(), ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      const match = /^(?:mcp: |listening )(http:\/\/127\.0\.0\.1:\d+)/m.exec(out);
      if (match) resolve({ child, url: match[1]!, kind, output: () => out });
    });
    child.once('exit', (code) =>
      reject(new Error(`${kind} exited with ${code} before listening: ${stderr}`)),
    );
  });
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  await new Promise<void>((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

export async function startServer(databaseUrl: string, env: NodeJS.ProcessEnv = {}): Promise<ServerChild> {
  const serveMcp = () =>
    start([path.join(distRoot, 'bench/serve-mcp.js'), databaseUrl], 'bench/serve-mcp', env);
  // BENCH_SERVER=serve-mcp: serve's composition that also counts its SQL (see bench/serve-mcp.ts).
  const started =
    process.env.BENCH_SERVER === 'serve-mcp'
      ? await serveMcp()
      : await start(
          [path.join(distRoot, 'src/cli.js'), '--database-url', databaseUrl, 'serve', '--port', '0'],
          'paygate serve',
          env,
        );
  const { child, url, kind } = started;
  const pid = child.pid!;
  return {
    url,
    kind,
    pid,
    peakRssMb: () => readStatusKb(pid, 'VmHWM') / 1024,
    async stop() {
      await stopChild(child);
      const m = /^sql statements=(\d+) transactions=(\d+)/m.exec(started.output());
      return m ? { statements: Number(m[1]), transactions: Number(m[2]) } : undefined;
    },
  };
}
