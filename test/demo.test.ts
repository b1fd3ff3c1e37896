import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { embeddedStatus } from '../src/db/embedded.js';
import { CLI } from './support/cli.js';

const exec = promisify(execFile);

describe('paygate demo', () => {
  it('runs the three seed requests through MCP with CLI approvals, and leaves nothing running', async () => {
    const dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'paygate-demo-test-'));
    try {
      const { stdout, stderr } = await exec(process.execPath, [CLI, '--data-dir', dataDir, 'demo'], {
        env: { PATH: process.env.PATH, HOME: process.env.HOME },
        timeout: 120_000,
      });
      expect(stdout).toMatch(/✓ paid: confirmation PG-\w+, Stripe pi_\w+, approved by admin@example.com/);
      expect(stdout).toMatch(/✓ scheduled for \d{4}-\d{2}-\d{2}, approved by jdoe@example.com/);
      expect(stdout).toMatch(/✓ refunded: 320.00 USD back through PayPal, approved by jdoe@example.com/);
      expect(stdout).toMatch(/--as admin@example.com` with their own token/);
      // Written for a person: no routine JSON log lines (stderr, the same terminal) between the steps.
      expect(stderr).not.toMatch(/"level":30/);
      // The embedded server it started is stopped again.
      expect((await embeddedStatus(dataDir)).running).toBe(false);
    } finally {
      await fs.rm(dataDir, { recursive: true, force: true });
    }
  });
});
