/**
 * `paygate mcp` hands out approve links for PAYGATE_PUBLIC_URL's port, and the human types their personal
 * access token into whatever answers there. So when that port is already taken, the listener must prove
 * it is this installation's paygate (/healthz?challenge= answered with an HMAC under its secret) before
 * the links are handed out; anything else makes `paygate mcp` refuse to start.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ServeHandle, serveApprovalPageIfFree, startServe } from '../../src/cli/serve.js';
import { resolveSecret } from '../../src/directory/encryption.js';
import { RefusedError } from '../../src/errors.js';
import type { Runtime } from '../../src/runtime.js';
import { healthProof } from '../../src/sidecar/app.js';
import { runCli } from '../support/cli.js';
import { createTestDatabase, type TestDatabase } from '../support/db.js';
import { createFixture, type Fixture } from '../support/fixture.js';
import { startSidecar } from './support.js';

let t: TestDatabase;
let f: Fixture;
let handle: ServeHandle;
let dataDir: string;

beforeAll(async () => {
  t = await createTestDatabase();
  f = await createFixture({ t, slug: 'pageport' });
  dataDir = await mkdtemp(path.join(os.tmpdir(), 'paygate-pageport-'));
  handle = await startServe({ port: 0, databaseUrl: t.url, dataDir, worker: false });
});

afterAll(async () => {
  await handle?.close();
  await f?.close();
  await t?.drop();
  await rm(dataDir, { recursive: true, force: true });
});

/** The runtime `paygate mcp` would have: same database and data directory, links to `publicUrl`. */
const mcpRuntime = (publicUrl: string): Runtime => ({
  ...handle.runtime,
  deps: { ...handle.runtime.deps, publicUrl },
});

async function listen(handler: http.RequestListener) {
  const server = http.createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

describe('/healthz?challenge=', () => {
  it('answers with HMAC-SHA256 under the installation secret, bound to the port it was asked on', async () => {
    const challenge = randomBytes(32).toString('hex');
    const body = (await (await fetch(`${handle.url}/healthz?challenge=${challenge}`)).json()) as {
      ok: boolean;
      proof: string;
    };
    const secret = await resolveSecret(handle.runtime.config);
    const port = Number(new URL(handle.url).port);
    expect(body).toEqual({ ok: true, proof: healthProof(secret, port, challenge) });
    expect(body.proof).not.toBe(healthProof(secret, port + 1, challenge));
    // Without a well-formed challenge it is the plain health check it always was.
    expect(await (await fetch(`${handle.url}/healthz`)).json()).toEqual({ ok: true });
    expect(await (await fetch(`${handle.url}/healthz?challenge=not-hex`)).json()).toEqual({ ok: true });
  });
});

describe('serveApprovalPageIfFree', () => {
  it('accepts a real paygate serve already on the port: that one serves the page', async () => {
    expect(await serveApprovalPageIfFree(mcpRuntime(handle.url))).toBeNull();
  });

  it('refuses a plain HTTP server squatting the port', async () => {
    const squat = await listen((_req, res) => {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ ok: true, proof: 'f'.repeat(64) }));
    });
    try {
      const refused = await serveApprovalPageIfFree(mcpRuntime(squat.url)).catch((e: unknown) => e);
      expect(refused).toBeInstanceOf(RefusedError);
      expect(refused).toMatchObject({
        code: 'approval_page_port_taken',
        message:
          "PAYGATE_PUBLIC_URL's port is held by something that is not paygate: approve links would go there",
      });
    } finally {
      await squat.close();
    }
  });

  it('refuses a squatter that relays the challenge to the real paygate on another port', async () => {
    const relay = await listen(async (req, res) => {
      const answer = await fetch(`${handle.url}${req.url}`);
      res.setHeader('content-type', 'application/json');
      res.end(await answer.text());
    });
    try {
      await expect(serveApprovalPageIfFree(mcpRuntime(relay.url))).rejects.toMatchObject({
        code: 'approval_page_port_taken',
      });
    } finally {
      await relay.close();
    }
  });

  it('refuses a paygate page with another secret (another installation)', async () => {
    const stranger = await startSidecar(f, {}, { instrumentGateways: false, healthProofSecret: 'not ours' });
    try {
      await expect(serveApprovalPageIfFree(mcpRuntime(stranger.url))).rejects.toMatchObject({
        code: 'approval_page_port_taken',
      });
    } finally {
      await stranger.close();
    }
  });

  it('serves the page itself when the port is free, and proves itself on it', async () => {
    const probe = await listen(() => {});
    const url = probe.url;
    await probe.close();
    const close = await serveApprovalPageIfFree(mcpRuntime(url));
    expect(close).toBeTypeOf('function');
    try {
      // A second `paygate mcp` on the same installation accepts this one.
      expect(await serveApprovalPageIfFree(mcpRuntime(url))).toBeNull();
    } finally {
      await close!();
    }
  });
});

it('paygate mcp exits 1 and says why when a stranger holds the approval page port', async () => {
  const squat = await listen((_req, res) => res.end('<h1>Preview</h1>'));
  try {
    const result = await runCli(['mcp'], {
      DATABASE_URL: t.url,
      PAYGATE_DATA_DIR: dataDir,
      PAYGATE_AGENT_KEY: f.agentKeySecret,
      PAYGATE_PUBLIC_URL: squat.url,
    });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(
      "PAYGATE_PUBLIC_URL's port is held by something that is not paygate: approve links would go there",
    );
  } finally {
    await squat.close();
  }
}, 60_000);
