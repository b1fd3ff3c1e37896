/**
 * NACHA throughput: read+validate and write of moov-io's 10,000-record reference file
 * (cmd/readACH/201805101354.ach: 5,000 PPD entries, each with an addenda 05), in MB/s of file text.
 *
 * `benchNacha()` is what the bench runner calls; `npx tsx bench/nacha.ts` or `node dist/bench/nacha.js`
 * runs it alone and prints the result as JSON.
 */

import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { readNacha } from '../src/gateways/nacha/reader.js';
import { readAndValidate } from '../src/gateways/nacha/validator.js';
import { type NachaSettings, type WriteEntry, writeNacha } from '../src/gateways/nacha/writer.js';

/** Each measurement repeats until at least this long has passed, so one slow GC does not decide it. */
const MIN_MEASURE_MS = 1_000;
const MIN_ITERATIONS = 5;

/** The repo root: the nearest folder above this file with a package.json (works from bench/ and dist/bench/). */
function repoRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!existsSync(path.join(dir, 'package.json'))) {
    const up = path.dirname(dir);
    if (up === dir) throw new Error('bench/nacha: no package.json above this file');
    dir = up;
  }
  return dir;
}

export const NACHA_BENCH_FILE = 'cmd/readACH/201805101354.ach';

const settings: NachaSettings = {
  immediateDestination: '231380104',
  immediateDestinationName: 'Citadel',
  immediateOrigin: '121042882',
  immediateOriginName: 'Wells Fargo',
  odfiRouting: '121042882',
  balanced: false,
};

function measure(work: () => number): number {
  let bytes = 0;
  let iterations = 0;
  const start = performance.now();
  while (iterations < MIN_ITERATIONS || performance.now() - start < MIN_MEASURE_MS) {
    bytes += work();
    iterations++;
  }
  const seconds = (performance.now() - start) / 1000;
  return bytes / 1e6 / seconds;
}

export async function benchNacha(): Promise<{ readValidateMBps: number; writeMBps: number }> {
  const source = readFileSync(path.resolve(repoRoot(), '../shared/reference/ach', NACHA_BENCH_FILE));
  const { file } = readNacha(source);
  const entries: WriteEntry[] = file.batches.flatMap((b) =>
    b.entries.map((e) => ({
      reference: e.traceNumber,
      secCode: 'PPD' as const,
      direction: 'credit' as const,
      company: {
        name: b.header.companyName,
        identification: b.header.companyIdentification.trim(),
        entryDescription: b.header.companyEntryDescription,
      },
      effectiveDate: '2026-11-27',
      routingNumber: e.rdfiIdentification + e.checkDigit,
      accountNumber: e.accountNumber,
      accountType: 'checking' as const,
      amountMinor: e.amountMinor,
      name: e.name,
      identificationNumber: e.identificationNumber,
      addenda: e.addenda[0]?.paymentRelatedInformation,
    })),
  );
  const createdAt = new Date('2026-11-26T00:00:00Z');

  const readValidateMBps = measure(() => {
    const { issues } = readAndValidate(source);
    if (issues.length > 0)
      throw new Error(`bench/nacha: reference file did not validate: ${issues[0]?.reason}`);
    return source.length;
  });
  const writeMBps = measure(() => writeNacha(entries, settings, { createdAt }).text.length);
  return { readValidateMBps, writeMBps };
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  const result = await benchNacha();
  console.log(
    JSON.stringify({
      readValidateMBps: Number(result.readValidateMBps.toFixed(1)),
      writeMBps: Number(result.writeMBps.toFixed(1)),
    }),
  );
}
