/**
 * `paygate sandbox`: the Stripe and PayPal emulators as a process of their own, so several paygate
 * processes (workers, serve) can share one sandbox and one ledger: start them with
 * PAYGATE_SANDBOX_STRIPE_URL and PAYGATE_SANDBOX_PAYPAL_URL set to the printed URLs.
 *
 * Prints, one per line, `stripe: URL`, `paypal: URL` and `ledger: URL` (with --json, one line
 * `{"stripe", "paypal", "ledger"}`); the last answers GET with the
 * sandbox ledger as JSON (`{entries: [...]}`, LedgerEntry fields), for tests that judge from outside
 * what the emulators really charged. Everything listens on loopback only. Runs until SIGTERM/SIGINT.
 * Webhook delivery is not wired here (a shared sandbox has no single sidecar to sign for).
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { type Command, InvalidArgumentError } from 'commander';

function port(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || n > 65535)
    throw new InvalidArgumentError('must be a port number from 0 to 65535');
  return n;
}

export function registerSandboxCommands(program: Command): void {
  program
    .command('sandbox')
    .description('run the Stripe and PayPal emulators on loopback until SIGTERM (for several processes)')
    .option('--stripe-port <n>', 'fixed port for the Stripe emulator', port)
    .option('--paypal-port <n>', 'fixed port for the PayPal emulator', port)
    .option('--ledger-port <n>', 'fixed port for the ledger endpoint', port)
    .action(async (o: { stripePort?: number; paypalPort?: number; ledgerPort?: number }) => {
      const { startSandbox } = await import('../sandbox/index.js');
      const sandbox = await startSandbox({
        stripe: { port: o.stripePort, achSettleDelayMs: 5_000 },
        paypal: { port: o.paypalPort },
      });
      const ledger = createServer((req, res) => {
        if (req.method !== 'GET' || !req.url?.startsWith('/ledger')) {
          res.writeHead(404).end();
          return;
        }
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ entries: sandbox.ledger.entries() }));
      });
      try {
        await new Promise<void>((resolve, reject) => {
          ledger.once('error', reject);
          ledger.listen(o.ledgerPort ?? 0, '127.0.0.1', resolve);
        });
      } catch (error) {
        // The emulators are already listening: without this the process would report and hang.
        await sandbox.close();
        throw error;
      }
      const ledgerUrl = `http://127.0.0.1:${(ledger.address() as AddressInfo).port}/ledger`;
      // README: every command takes --json; a program reads the three URLs as one JSON object.
      process.stdout.write(
        program.opts<{ json?: boolean }>().json
          ? `${JSON.stringify({ stripe: sandbox.stripeUrl, paypal: sandbox.paypalUrl, ledger: ledgerUrl })}\n`
          : `stripe: ${sandbox.stripeUrl}\npaypal: ${sandbox.paypalUrl}\nledger: ${ledgerUrl}\n`,
      );
      await new Promise<void>((resolve) => {
        process.once('SIGTERM', resolve);
        process.once('SIGINT', resolve);
      });
      ledger.closeAllConnections();
      await new Promise<void>((resolve) => ledger.close(() => resolve()));
      await sandbox.close();
    });
}
