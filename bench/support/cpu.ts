/**
 * Where the CPU goes during a timed run, read from /proc: the bench process itself (the clients or the
 * baseline's `pg`), the server child, and every PostgreSQL process on this machine (the server may be the
 * machine's or the embedded one; both run as processes named `postgres`). Linux only; elsewhere the
 * readings are NaN and the bench reports no split.
 */
import { readdirSync, readFileSync } from 'node:fs';

const TICKS_PER_SECOND = 100; // USER_HZ, 100 on every Linux this runs on

export interface CpuReading {
  benchMs: number;
  serverMs: number;
  postgresMs: number;
}

/** utime + stime of one process in ms, or NaN when it cannot be read (gone, or not Linux). */
function processCpuMs(pid: number | string): { comm: string; ms: number; exitedChildrenMs: number } {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // comm is in parentheses and may contain spaces; the fields after it are space-separated.
    const close = stat.lastIndexOf(')');
    const comm = stat.slice(stat.indexOf('(') + 1, close);
    const fields = stat.slice(close + 2).split(' ');
    // fields[11] is utime, fields[12] stime (fields 14 and 15 of proc(5), counting from pid = 1), and
    // fields[13] and [14] the same for its children that have exited and been waited for.
    const ticks = (i: number, j: number) =>
      ((Number(fields[i]) + Number(fields[j])) * 1000) / TICKS_PER_SECOND;
    return { comm, ms: ticks(11, 12), exitedChildrenMs: ticks(13, 14) };
  } catch {
    return { comm: '', ms: Number.NaN, exitedChildrenMs: Number.NaN };
  }
}

/**
 * CPU ms of the PostgreSQL processes alive now; with `exitedBackends`, also of the backends that have
 * exited (counted in the postmaster's children), which the worker bench needs because its workers'
 * sessions end with them, at the price of also counting other sessions' exited backends.
 */
function postgresCpuMs(options: { exitedBackends?: boolean } = {}): number {
  let total = 0;
  let dirs: string[];
  try {
    dirs = readdirSync('/proc');
  } catch {
    return Number.NaN;
  }
  for (const entry of dirs) {
    if (!/^\d+$/.test(entry)) continue;
    const { comm, ms, exitedChildrenMs } = processCpuMs(entry);
    if (comm === 'postgres' && Number.isFinite(ms))
      total += ms + (options.exitedBackends ? exitedChildrenMs : 0);
  }
  return total;
}

/**
 * CPU ms of this process's children that have exited and been waited for (cutime + cstime): how the
 * worker bench counts its `paygate worker` processes, which are gone by the time it reads.
 */
export function exitedChildrenCpuMs(): number {
  return processCpuMs('self').exitedChildrenMs;
}

export function readCpu(serverPid?: number, options: { exitedBackends?: boolean } = {}): CpuReading {
  const own = process.cpuUsage();
  return {
    benchMs: (own.user + own.system) / 1000,
    serverMs: serverPid === undefined ? 0 : processCpuMs(serverPid).ms,
    postgresMs: postgresCpuMs(options),
  };
}

export function cpuSince(
  before: CpuReading,
  serverPid?: number,
  options: { exitedBackends?: boolean } = {},
): CpuReading {
  const now = readCpu(serverPid, options);
  return {
    benchMs: now.benchMs - before.benchMs,
    serverMs: now.serverMs - before.serverMs,
    postgresMs: now.postgresMs - before.postgresMs,
  };
}

export function addCpu(a: CpuReading, b: CpuReading): CpuReading {
  return {
    benchMs: a.benchMs + b.benchMs,
    serverMs: a.serverMs + b.serverMs,
    postgresMs: a.postgresMs + b.postgresMs,
  };
}

/** CPU ms per item of work, rounded to 0.1 ms. */
export function perItem(cpu: CpuReading, items: number): CpuReading {
  const r = (ms: number) => Math.round((ms / items) * 10) / 10;
  return { benchMs: r(cpu.benchMs), serverMs: r(cpu.serverMs), postgresMs: r(cpu.postgresMs) };
}
