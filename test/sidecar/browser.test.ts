/**
 * End to end in a real browser (Debian's chromium driven by playwright-core): an agent asks to pay, a
 * human follows the approve_url, logs in with their personal access token, reads what will happen,
 * approves, copies the token shown once, and the agent's retry with it pays the invoice.
 * A screenshot of the approval page is taken on every run; with UPDATE_SCREENSHOTS=1 it replaces
 * docs/approval-page.png (so an ordinary run never dirties the working tree).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { type BrowserContext, chromium } from 'playwright-core';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { type ApprovalRequired, type PaymentConfirmation, payInvoice } from '../../src/payments/pay.js';
import { createFixture, type Fixture } from '../support/fixture.js';
import { repoRoot } from '../support/reference.js';
import { type RunningSidecar, startSidecar } from './support.js';

const CHROMIUM = '/usr/bin/chromium';
const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-quic',
  '--no-first-run',
  '--disable-component-update',
  '--disable-sync',
];

let f: Fixture;
let s: RunningSidecar;
let context: BrowserContext;
let userDataDir: string;

beforeAll(async () => {
  f = await createFixture({ slug: 'browser' });
  await f.addMethod({
    rail: 'stripe',
    token: 'pm_card_visa',
    label: 'Corporate Visa',
    brand: 'visa',
    last4: '4242',
  });
  await f.addInvoice('INV-2025-001', 500_00);
  s = await startSidecar(f, {});
  // approve_url points at this sidecar, as PAYGATE_PUBLIC_URL would in production.
  f.deps.publicUrl = s.url;
  userDataDir = await mkdtemp(path.join(os.tmpdir(), 'paygate-chromium-'));
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: ARGS,
    viewport: { width: 390, height: 844 },
    deviceScaleFactor: 2,
    isMobile: true,
    hasTouch: true,
  });
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: s.url });
});

afterAll(async () => {
  await context?.close();
  await rm(userDataDir, { recursive: true, force: true });
  await s?.close();
  await f?.close();
});

it('a human approves in the browser and the agent’s retry with the token pays', async () => {
  const caller = { agentKey: f.agentKey };
  const input = { invoice: 'INV-2025-001', amount: '500.00', currency: 'USD', method: 'stripe' };
  const ask = (await payInvoice(f.deps, caller, input)) as ApprovalRequired;
  expect(ask.approve_url).toBe(`${s.url}/approvals/${ask.approval_id}`);

  const page = await context.newPage();
  const problems: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(m.text());
  });
  page.on('pageerror', (e) => problems.push(e.message));

  await page.goto(ask.approve_url);
  expect(new URL(page.url()).pathname).toBe('/login');
  await page.getByLabel('Your personal access token').fill(f.approver.token);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.waitForURL(ask.approve_url);

  const card = page.locator('.card').first();
  await expect.poll(() => card.textContent()).toContain('500.00');
  const text = (await card.textContent())!;
  for (const fact of [
    'USD',
    'Acme Supplies',
    'INV-2025-001',
    'Corporate Visa, ending in 4242',
    'Agent "claude"',
  ]) {
    expect(text).toContain(fact);
  }
  const shot = process.env.UPDATE_SCREENSHOTS
    ? path.join(repoRoot, 'docs/approval-page.png')
    : path.join(userDataDir, 'approval-page.png');
  expect((await page.screenshot({ path: shot, fullPage: true })).length).toBeGreaterThan(10_000);

  await page.getByRole('button', { name: 'Approve' }).click();
  await page.getByText('shown only this once').waitFor();
  const token = (await page.locator('#approval-token').textContent())!.trim();
  expect(token).toMatch(/^apt_[A-Za-z0-9_-]{43}$/);

  // The copy button (a served script; the CSP allows no inline code) puts the token on the clipboard.
  await page.getByRole('button', { name: 'Copy' }).click();
  await expect.poll(() => page.getByRole('button', { name: /Copied|Copy/ }).textContent()).toBe('Copied');
  expect(await page.evaluate('navigator.clipboard.readText()')).toBe(token);

  const done = (await payInvoice(f.deps, caller, { ...input, approval_token: token })) as PaymentConfirmation;
  expect(done).toMatchObject({
    success: true,
    status: 'paid',
    invoice_number: 'INV-2025-001',
    amount: '500.00',
    approved_by: 'jdoe@example.com',
  });
  expect(f.sandbox.ledger.charges(done.payment_id)).toHaveLength(1);

  // Reloading does not show the token again: it existed on one response only.
  await page.goto(ask.approve_url);
  expect(await page.content()).not.toContain(token);
  expect(problems).toEqual([]);
}, 120_000);
