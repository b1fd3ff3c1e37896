/**
 * Where the CPU goes during a timed run, read from /proc: the bench process itself (the clients or the
 * baseline's `pg`), the server child, and the bench database's PostgreSQL server (its postmaster and
 * every process it forked: backends, WAL writer, checkpointer; not other PostgreSQL servers on the
 * machine). Linux only; elsewhere the readings are NaN.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { round } from './stats.js';

const TICKS_PER_SECOND = 100; // USER_HZ, 100 on every Linux this runs on

export interface CpuReading {
  benchMs: number;
  serverMs: number;
  postgresMs: number;
}

interface ProcessCpu {
  ppid: number;
  /** utime + stime */
  ms: number;
  /** cutime + cstime: its children that have exited and been waited for. */
  exitedChildrenMs: number;
}

/** One process's CPU in ms and its parent, or NaN when it cannot be read (gone, or not Linux). */
function processCpuMs(pid: number | string): ProcessCpu {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // comm is in parentheses and may contain spaces; the fields after it are space-separated.
    const close = stat.lastIndexOf(')');
    const fields = stat.slice(close + 2).split(' ');
    // fields[1] is ppid, [11] and [12] utime and stime, [13] and [14] cutime and cstime (fields 4 and
    // 14 to 17 of proc(5), counting from pid = 1).
    const ticks = (i: number, j: number) =>
      ((Number(fields[i]) + Number(fields[j])) * 1000) / TICKS_PER_SECOND;
    return { ppid: Number(fields[1]), ms: ticks(11, 12), exitedChildrenMs: ticks(13, 14) };
  } catch {
    return { ppid: 0, ms: Number.NaN, exitedChildrenMs: Number.NaN };
  }
}

/** The postmaster of the server a connection is on: the parent of its backend. */
export async function postmasterPid(db: {
  query: (sql: string) => Promise<{ rows: { pid: number }[] }>;
}): Promise<number> {
  const { rows } = await db.query('SELECT pg_backend_pid() AS pid');
  return processCpuMs(rows[0]!.pid).ppid;
}

export interface CpuSources {
  serverPid?: number;
  postmasterPid: number;
  /**
   * Also count the server's backends that have exited (in the postmaster's children's time): the worker
   * bench needs it, because its workers' sessions end with them.
   */
  exitedBackends?: boolean;
}

function postgresCpuMs({ postmasterPid: postmaster, exitedBackends }: CpuSources): number {
  const own = processCpuMs(postmaster);
  let total = own.ms + (exitedBackends ? own.exitedChildrenMs : 0);
  let dirs: string[];
  try {
    dirs = readdirSync('/proc');
  } catch {
    return Number.NaN;
  }
  for (const entry of dirs) {
    if (!/^\d+$/.test(entry)) continue;
    const { ppid, ms } = processCpuMs(entry);
    if (ppid === postmaster && Number.isFinite(ms)) total += ms;
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

export function readCpu(sources: CpuSources): CpuReading {
  const own = process.cpuUsage();
  return {
    benchMs: (own.user + own.system) / 1000,
    serverMs: sources.serverPid === undefined ? 0 : processCpuMs(sources.serverPid).ms,
    postgresMs: postgresCpuMs(sources),
  };
}

export function cpuSince(before: CpuReading, sources: CpuSources): CpuReading {
  const now = readCpu(sources);
  return {
    benchMs: now.benchMs - before.benchMs,
    serverMs: now.serverMs - before.serverMs,
    postgresMs: now.postgresMs - before.postgresMs,
  };
}

function addCpu(a: CpuReading, b: CpuReading): CpuReading {
  return {
    benchMs: a.benchMs + b.benchMs,
    serverMs: a.serverMs + b.serverMs,
    postgresMs: a.postgresMs + b.postgresMs,
  };
}

/** CPU ms per item of work, rounded to 0.1 ms. */
export function perItem(cpu: CpuReading, items: number): CpuReading {
  const r = (ms: number) => round(ms / items, 1);
  return { benchMs: r(cpu.benchMs), serverMs: r(cpu.serverMs), postgresMs: r(cpu.postgresMs) };
}

/** The CPU of interleaved timed runs, summed per side: `timed` runs one and adds its CPU to its side. */
export function cpuMeter<Side extends string>(sources: CpuSources) {
  const totals = new Map<Side, CpuReading>();
  const zero: CpuReading = { benchMs: 0, serverMs: 0, postgresMs: 0 };
  return {
    async timed<T>(side: Side, run: () => Promise<T>): Promise<T> {
      const before = readCpu(sources);
      const result = await run();
      totals.set(side, addCpu(totals.get(side) ?? zero, cpuSince(before, sources)));
      return result;
    },
    perItem: (side: Side, items: number): CpuReading => perItem(totals.get(side) ?? zero, items),
  };
}
