/**
 * Where the CPU goes during a timed run, read from /proc: the bench process itself (the clients or the
 * baseline's `pg`), the server child, and the bench database's PostgreSQL server (its postmaster and
 * every process it forked: backends, WAL writer, checkpointer; not other PostgreSQL servers on the
 * machine). Linux only; elsewhere the readings are NaN.
 */
import { readdirSync, readFileSync } from 'node:fs';

const TICKS_PER_SECOND = 100; // USER_HZ, 100 on every Linux this runs on

export interface CpuReading {
  benchMs: number;
  serverMs: number;
  postgresMs: number;
}

/** utime + stime of one process in ms and its parent, or NaN when it cannot be read (gone, or not Linux). */
function processCpuMs(pid: number | string): { ppid: number; ms: number } {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // comm is in parentheses and may contain spaces; the fields after it are space-separated.
    const close = stat.lastIndexOf(')');
    const fields = stat.slice(close + 2).split(' ');
    // fields[1] is ppid, fields[11] utime, fields[12] stime (fields 4, 14 and 15 of proc(5)).
    return {
      ppid: Number(fields[1]),
      ms: ((Number(fields[11]) + Number(fields[12])) * 1000) / TICKS_PER_SECOND,
    };
  } catch {
    return { ppid: 0, ms: Number.NaN };
  }
}

/** The postmaster of the server a connection is on: the parent of its backend. */
export async function postmasterPid(db: {
  query: (sql: string) => Promise<{ rows: { pid: number }[] }>;
}): Promise<number> {
  const { rows } = await db.query('SELECT pg_backend_pid() AS pid');
  return processCpuMs(rows[0]!.pid).ppid;
}

function postgresCpuMs(postmaster: number): number {
  let total = processCpuMs(postmaster).ms;
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

export interface CpuSources {
  serverPid?: number;
  postmasterPid: number;
}

export function readCpu({ serverPid, postmasterPid }: CpuSources): CpuReading {
  const own = process.cpuUsage();
  return {
    benchMs: (own.user + own.system) / 1000,
    serverMs: serverPid === undefined ? 0 : processCpuMs(serverPid).ms,
    postgresMs: postgresCpuMs(postmasterPid),
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
