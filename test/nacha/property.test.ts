import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { readAndValidate, routingCheckDigit } from '../../src/gateways/nacha/validator.js';
import { type WriteEntry, writeNacha } from '../../src/gateways/nacha/writer.js';
import { balancedSettings, expected, readBack, settings } from './fixtures.js';

const routing = fc.stringMatching(/^\d{8}$/).map((d) => `${d}${routingCheckDigit(d)}`);
/** Printable ASCII without leading or trailing blanks: NACHA fields are blank-padded, so blanks at the ends cannot survive. */
const text = (max: number) =>
  fc
    .stringMatching(new RegExp(`^[\\x21-\\x7e]([\\x20-\\x7e]{0,${max - 2}}[\\x21-\\x7e])?$`))
    .filter((s) => s.length <= max);
const company = fc.record({
  name: text(16),
  identification: fc.stringMatching(/^\d{10}$/),
  entryDescription: text(10),
});
const entryArb = fc.record({
  reference: fc.uuid(),
  secCode: fc.constantFrom('CCD' as const, 'PPD' as const),
  direction: fc.constantFrom('credit' as const, 'debit' as const),
  company: fc
    .constantFrom(0, 1)
    .chain((i) =>
      i === 0
        ? fc.constant({ name: 'ACME', identification: '1234567890', entryDescription: 'VENDOR PAY' })
        : company,
    ),
  effectiveDate: fc
    .date({
      min: new Date('2026-01-01T00:00:00Z'),
      max: new Date('2030-12-31T00:00:00Z'),
      noInvalidDate: true,
    })
    .map((d) => d.toISOString().slice(0, 10)),
  routingNumber: routing,
  accountNumber: text(17),
  accountType: fc.constantFrom('checking' as const, 'savings' as const),
  amountMinor: fc.integer({ min: 1, max: 9_999_999_999 }),
  name: text(22),
  identificationNumber: text(15),
  addenda: fc.option(text(80), { nil: undefined }),
}) as fc.Arbitrary<WriteEntry>;

describe('writer and reader agree (property)', () => {
  it('random batches written then read give the same entries and validate', () => {
    fc.assert(
      fc.property(fc.array(entryArb, { minLength: 1, maxLength: 40 }), fc.boolean(), (entries, balanced) => {
        const out = writeNacha(entries, balanced ? balancedSettings : settings, {
          createdAt: new Date('2026-11-26T10:00:00Z'),
        });
        const { file, issues } = readAndValidate(out.text, 'prop.ach');
        expect(issues).toEqual([]);
        const back = readBack(file);
        expect(back.size).toBe(entries.length + out.offsets.length);
        entries.forEach((e, i) => {
          expect(back.get(out.traces[i]?.traceNumber ?? '')).toEqual(expected(e));
        });
        if (balanced)
          for (const b of file.batches) expect(b.control?.totalDebitMinor).toBe(b.control?.totalCreditMinor);
      }),
      { numRuns: 200 },
    );
  });

  it('any changed amount digit in a written file is caught by the control totals', () => {
    fc.assert(
      fc.property(
        fc.array(entryArb, { minLength: 1, maxLength: 10 }),
        fc.nat(),
        fc.integer({ min: 30, max: 39 }),
        fc.integer({ min: 1, max: 9 }),
        (entries, pick, position, bump) => {
          const out = writeNacha(entries, settings, { createdAt: new Date('2026-11-26T10:00:00Z') });
          const records = out.text.split('\n');
          const entryLines = records.flatMap((r, i) => (r.startsWith('6') ? [i] : []));
          const n = entryLines[pick % entryLines.length] as number;
          const record = records[n] as string;
          const digit = (Number(record[position - 1]) + bump) % 10;
          records[n] = record.slice(0, position - 1) + String(digit) + record.slice(position);
          const { issues } = readAndValidate(records.join('\n'), 'tampered.ach');
          expect(issues).toContainEqual({
            line: expect.any(Number),
            reason: expect.stringMatching(/total (debit|credit) .* does not match/),
          });
        },
      ),
      { numRuns: 200 },
    );
  });
});
