/**
 * The embedded server keeps the port it was made with, and anything can take that port while it is
 * stopped (a reboot, another program). Starting again must still work: the data is the same, only
 * the port moves, and every later process finds the server at the new one.
 */
import { promises as fs } from 'node:fs';
import net, { type AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { embeddedStatus, ensureEmbeddedServer, stopEmbeddedServer } from '../../src/db/embedded.js';

const portOf = (url: string) => Number(new URL(url).port);

async function query(url: string, sql: string) {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query(sql)).rows;
  } finally {
    await client.end();
  }
}

describe('the embedded server when its port was taken while it was stopped', () => {
  let dataDir: string;
  beforeAll(async () => {
    dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'paygate-embedded-port-'));
    await fs.chmod(dataDir, 0o755);
  });
  afterAll(async () => {
    await stopEmbeddedServer(dataDir);
    await fs.rm(dataDir, { recursive: true, force: true });
  });

  it('starts on a free port with its data, and the next process finds it there', async () => {
    const first = await ensureEmbeddedServer(dataDir);
    await query(first, "CREATE TABLE kept (note text); INSERT INTO kept VALUES ('still here')");
    expect(await stopEmbeddedServer(dataDir)).toBe(true);

    // Another program on the port; it hangs up on whoever connects (our "is it running?" probe does).
    const squatter = net.createServer((socket) => socket.destroy());
    await new Promise<void>((resolve) => squatter.listen(portOf(first), '127.0.0.1', resolve));
    try {
      const moved = await ensureEmbeddedServer(dataDir);
      expect(portOf(moved)).not.toBe(portOf(first));
      expect((squatter.address() as AddressInfo).port).toBe(portOf(first));
      expect(await query(moved, 'SELECT note FROM kept')).toEqual([{ note: 'still here' }]);

      // Another process reads the server file: it connects at the new port without starting anything.
      expect(await ensureEmbeddedServer(dataDir)).toBe(moved);
      expect(await embeddedStatus(dataDir)).toMatchObject({
        running: true,
        answering: true,
        port: portOf(moved),
      });
    } finally {
      await new Promise<void>((resolve) => squatter.close(() => resolve()));
    }

    // Stopped and started again with the old port free, it stays where it moved to.
    await stopEmbeddedServer(dataDir);
    expect(portOf(await ensureEmbeddedServer(dataDir))).toBe(portOf((await embeddedStatus(dataDir)).url!));
    expect((await embeddedStatus(dataDir)).port).not.toBe(portOf(first));
  }, 120_000);

  it('running but not answering us, it keeps its port: the error says so, and nothing is rewritten', async () => {
    const url = await ensureEmbeddedServer(dataDir);
    const serverFile = path.join(dataDir, 'server.json');
    const conf = path.join(dataDir, 'pg', 'postgresql.conf');
    const recorded = await fs.readFile(serverFile, 'utf8');
    const confBefore = await fs.readFile(conf, 'utf8');
    // Our own postmaster holds the port but refuses us (as when every connection slot is taken):
    // a wrong password in the server file is the same from here.
    await fs.writeFile(serverFile, JSON.stringify({ ...JSON.parse(recorded), password: 'not-the-password' }));
    try {
      await expect(ensureEmbeddedServer(dataDir)).rejects.toThrow(
        /is running on port \d+ but does not answer/,
      );
      expect(JSON.parse(await fs.readFile(serverFile, 'utf8')).port).toBe(portOf(url));
      expect(await fs.readFile(conf, 'utf8')).toBe(confBefore);
      // Status and stop ask pg_ctl, not a connection: it runs, it does not answer, and it stops.
      expect(await embeddedStatus(dataDir)).toMatchObject({ running: true, answering: false });
      expect(await stopEmbeddedServer(dataDir)).toBe(true);
      expect(await embeddedStatus(dataDir)).toMatchObject({ running: false, answering: false });
    } finally {
      await fs.writeFile(serverFile, recorded, { mode: 0o600 });
    }
    expect(await ensureEmbeddedServer(dataDir)).toBe(url);
  }, 120_000);
});
