/**
 * The emulators' webhook sender: events go out after their delay, over keep-alive connections, and an
 * emulator that closes first sends what is still waiting rather than dropping it.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createWebhookSender, type DeliveryRecord } from '../../src/sandbox/delivery.js';

let server: http.Server;
let url: string;
const received: { path: string; body: string; signature?: string }[] = [];

beforeAll(async () => {
  server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (chunk: Buffer) => {
      body += chunk.toString();
    });
    req.on('end', () => {
      received.push({ path: req.url!, body, signature: req.headers['x-signature'] as string | undefined });
      res.statusCode = req.url === '/refuse' ? 400 : 200;
      res.end('{}');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

it('delivers after the delay, built when sent, and records each answer', async () => {
  received.length = 0;
  const sender = createWebhookSender();
  const built: number[] = [];
  const accepted: DeliveryRecord = {};
  const refused: DeliveryRecord = {};
  const build = (n: number) => () => {
    built.push(n);
    return { headers: { 'x-signature': `sig-${n}` }, body: `event-${n}` };
  };
  sender.send(`${url}/hook`, 50, build(1), accepted);
  sender.send(`${url}/refuse`, 0, build(2), refused);
  // Nothing is built (signed) before its time.
  expect(built).toEqual([]);
  await sender.idle();
  // Each waited its own delay: the one sent first, due in 50 ms, was built after the one due at once.
  expect(built).toEqual([2, 1]);
  expect(accepted).toEqual({ status: 200 });
  expect(refused).toEqual({ status: 400 });
  expect(received).toEqual(
    expect.arrayContaining([
      { path: '/hook', body: 'event-1', signature: 'sig-1' },
      { path: '/refuse', body: 'event-2', signature: 'sig-2' },
    ]),
  );
  await sender.close();
});

it('closing sends what is still waiting, and refuses to send after', async () => {
  received.length = 0;
  const sender = createWebhookSender();
  const waiting: DeliveryRecord = {};
  sender.send(`${url}/late`, 60_000, () => ({ headers: {}, body: 'late' }), waiting);
  await sender.close();
  expect(waiting).toEqual({ status: 200 });
  expect(received.map((r) => r.path)).toEqual(['/late']);
  const afterClose: DeliveryRecord = {};
  sender.send(`${url}/after`, 0, () => ({ headers: {}, body: 'x' }), afterClose);
  expect(afterClose.error).toMatch(/closed/);
});

it('an endpoint that cannot be reached is recorded as an error, not thrown', async () => {
  const sender = createWebhookSender();
  const record: DeliveryRecord = {};
  sender.send('http://127.0.0.1:1/hook', 0, () => ({ headers: {}, body: 'x' }), record);
  await sender.idle();
  expect(record.status).toBeUndefined();
  expect(record.error).toMatch(/ECONNREFUSED/);
  await sender.close();
});
