/**
 * `paygate demo` as a person runs it: interrupted with Ctrl-C, run twice on one --data-dir, and on a
 * data dir whose embedded database is already running. It must leave nothing running it started.
 * Needs `npm run build`.
 */
import { execFile, spawn } from 'node:child_process';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { embeddedStatus, stopEmbeddedServer } from '../src/db/embedded.js';
import { CLI } from './support/cli.js';

const exec = promisify(execFile);
const env = { PATH: process.env.PATH, HOME: process.env.HOME };
const dirs: string[] = [];

async function postgresFor(dir: string): Promise<string[]> {
  const { stdout } = await exec('ps', ['-eo', 'pid,args']);
  return stdout.split('\n').filter((l) => l.includes(dir) && /postgres/.test(l));
}

describe('paygate demo', () => {
  afterAll(async () => {
    for (const d of dirs) {
      await stopEmbeddedServer(d).catch(() => {});
      await fs.rm(d, { recursive: true, force: true }).catch(() => {});
    }
  });

  it('Ctrl-C during the demo leaves no embedded PostgreSQL running and no temporary data dir', async () => {
    const child = spawn(process.execPath, [CLI, 'demo'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    const dataDir = await new Promise<string>((resolve, reject) => {
      child.stdout.on('data', (d) => {
        stdout += d;
        const m = /data in (\S+?);? \(temporary\)/.exec(stdout) ?? /data in (\S+) \(temporary\)/.exec(stdout);
        if (m && /agent connected/.test(stdout)) resolve(m[1]!.replace(/;$/, ''));
      });
      child.once('exit', () => reject(new Error(`demo exited early: ${stdout} ${stderr}`)));
    });
    dirs.push(dataDir);
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    child.kill('SIGINT');
    await exited;
    // give a detached server a moment to have been stopped by an orderly shutdown (none asserted on time)
    const running = (await embeddedStatus(dataDir).catch(() => ({ running: false }))).running;
    const dirLeft = await fs.stat(dataDir).then(
      () => true,
      () => false,
    );
    const procs = await postgresFor(dataDir);
    expect({ running, dirLeft, procs }).toEqual({ running: false, dirLeft: false, procs: [] });
  });

  it('run twice on one --data-dir: the second run says what is wrong and still leaves nothing running', async () => {
    const dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'h6-demo-twice-'));
    dirs.push(dataDir);
    const first = await exec(process.execPath, [CLI, '--data-dir', dataDir, 'demo'], {
      env,
      timeout: 120_000,
    });
    expect(first.stdout).toMatch(/✓ paid/);
    expect((await embeddedStatus(dataDir)).running).toBe(false);
    const second = await exec(process.execPath, [CLI, '--data-dir', dataDir, 'demo'], {
      env,
      timeout: 120_000,
    }).then(
      (r) => ({ code: 0, ...r }),
      (e: { code: number; stdout: string; stderr: string }) => ({
        code: e.code,
        stdout: e.stdout,
        stderr: e.stderr,
      }),
    );
    expect((await embeddedStatus(dataDir)).running).toBe(false);
    expect(await postgresFor(dataDir)).toEqual([]);
    // Either it runs again or it refuses clearly; never a raw JSON dump of a tool error or a stack trace.
    if (second.code !== 0) {
      expect(second.stderr).not.toMatch(/\n\s+at .+:\d+:\d+/);
      expect(second.stderr).not.toMatch(/\{"error":\{"code"/);
      expect(second.stderr).toMatch(/data-dir|already|fresh/i);
    }
  });

  it('on a data dir whose embedded database is already running: runs, and leaves that server running', async () => {
    const dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'h6-demo-running-'));
    dirs.push(dataDir);
    await fs.chmod(dataDir, 0o755);
    await exec(process.execPath, [CLI, '--data-dir', dataDir, 'migrate'], { env, timeout: 120_000 });
    expect((await embeddedStatus(dataDir)).running).toBe(true);
    const r = await exec(process.execPath, [CLI, '--data-dir', dataDir, 'demo'], { env, timeout: 120_000 });
    expect(r.stdout).toMatch(/✓ refunded/);
    expect((await embeddedStatus(dataDir)).running).toBe(true);
    // No personal access token or agent key printed in full by the demo.
    expect(r.stdout + r.stderr).not.toMatch(
      /pat_[A-Za-z0-9_-]{20,}|agk_[A-Za-z0-9_-]{20,}|apt_[A-Za-z0-9_-]{20,}/,
    );
    await stopEmbeddedServer(dataDir);
  });
});
