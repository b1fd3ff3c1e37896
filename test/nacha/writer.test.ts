import { describe, expect, it } from 'vitest';
import { readNacha } from '../../src/gateways/nacha/reader.js';
import { readAndValidate } from '../../src/gateways/nacha/validator.js';
import {
  NachaWriteError,
  nachaSettingsSchema,
  type WriteEntry,
  writeNacha,
} from '../../src/gateways/nacha/writer.js';
import { acme, balancedSettings, entry, expected, readBack, settings } from './fixtures.js';
import { readRef } from './support.js';

const createdAt = new Date('2026-11-26T09:30:00Z');

describe('writeNacha', () => {
  it('writes a file that re-reads to the same entries and validates', () => {
    const entries = [
      entry({ reference: 'a', amountMinor: 12345, addenda: 'INV-2025-001 November services' }),
      entry({
        reference: 'b',
        direction: 'debit',
        accountType: 'savings',
        amountMinor: 1,
        routingNumber: '121042882',
      }),
      entry({ reference: 'c', secCode: 'PPD', name: 'Jane Doe', amountMinor: 9_999_999_999 }),
    ];
    const out = writeNacha(entries, settings, { createdAt });
    const { file, issues } = readAndValidate(out.text, 'out.ach');
    expect(issues).toEqual([]);
    const back = readBack(file);
    expect(out.traces.map((t) => t.reference)).toEqual(['a', 'b', 'c']);
    for (const [i, t] of out.traces.entries())
      expect(back.get(t.traceNumber)).toEqual(expected(entries[i] as WriteEntry));
    expect(back.size).toBe(3);
    expect(out.offsets).toEqual([]);
    // 94-character records, padded to whole blocks of ten.
    const records = out.text.split('\n').slice(0, -1);
    expect(records.every((r) => r.length === 94)).toBe(true);
    expect(records.length % 10).toBe(0);
    expect(file.header?.fileCreationDate).toBe('261126');
    expect(file.header?.fileCreationTime).toBe('0930');
  });

  it('batches by SEC code, company and effective date, with service class by direction', () => {
    const other = { ...acme, name: 'ACME Payroll', identification: '1234567891' };
    const entries = [
      entry({ reference: 'credit-27' }),
      entry({ reference: 'debit-27', direction: 'debit' }),
      entry({ reference: 'credit-28', effectiveDate: '2026-11-28' }),
      entry({ reference: 'ppd', secCode: 'PPD' }),
      entry({ reference: 'debit-other', company: other, direction: 'debit' }),
      entry({ reference: 'credit-27-again', amountMinor: 7 }),
    ];
    const out = writeNacha(entries, settings, { createdAt });
    const { file, issues } = readAndValidate(out.text, 'out.ach');
    expect(issues).toEqual([]);
    const shape = file.batches.map((b) => [
      b.header.standardEntryClassCode,
      b.header.companyIdentification,
      b.header.effectiveEntryDate,
      b.header.serviceClassCode,
      b.entries.length,
    ]);
    expect(shape).toEqual([
      ['CCD', '1234567890', '261127', '200', 3],
      ['CCD', '1234567891', '261127', '225', 1],
      ['PPD', '1234567890', '261127', '220', 1],
      ['CCD', '1234567890', '261128', '220', 1],
    ]);
    const byRef = Object.fromEntries(out.traces.map((t) => [t.reference, t.batchNumber]));
    expect(byRef['credit-27']).toBe(byRef['credit-27-again']);
    // Trace numbers start with the ODFI and never repeat.
    expect(new Set(out.traces.map((t) => t.traceNumber)).size).toBe(entries.length);
    expect(out.traces.every((t) => t.traceNumber.startsWith('12104288'))).toBe(true);
  });

  it('balances each batch with an offset entry to the ODFI account when the ODFI requires it', () => {
    const entries = [
      entry({ reference: 'a', amountMinor: 30000 }),
      entry({ reference: 'b', amountMinor: 20000 }),
      entry({ reference: 'c', direction: 'debit', amountMinor: 5000 }),
    ];
    const out = writeNacha(entries, balancedSettings, { createdAt });
    const { file, issues } = readAndValidate(out.text, 'balanced.ach');
    expect(issues).toEqual([]);
    expect(out.offsets).toEqual([
      { batchNumber: 1, traceNumber: '121042880000004', direction: 'debit', amountMinor: 45000 },
    ]);
    const batch = file.batches[0];
    expect(batch?.header.serviceClassCode).toBe('200');
    expect(batch?.control?.totalDebitMinor).toBe(50000);
    expect(batch?.control?.totalCreditMinor).toBe(50000);
    const offset = batch?.entries.at(-1);
    expect([
      offset?.transactionCode,
      offset?.rdfiIdentification,
      offset?.accountNumber,
      offset?.name,
    ]).toEqual(['27', '12104288', '9876543210', 'ACME OPERATING']);
    expect(out.totalDebitMinor).toBe(out.totalCreditMinor);
  });

  it('writes an already balanced batch without an offset', () => {
    const out = writeNacha(
      [entry({ reference: 'a' }), entry({ reference: 'b', direction: 'debit' })],
      balancedSettings,
      { createdAt },
    );
    expect(out.offsets).toEqual([]);
    expect(readAndValidate(out.text).issues).toEqual([]);
  });

  it('writes prenotes as zero-amount 23/28/33/38 entries', () => {
    const entries = [
      entry({ reference: 'p1', prenote: true, amountMinor: 0 }),
      entry({ reference: 'p2', prenote: true, amountMinor: 0, direction: 'debit', accountType: 'savings' }),
    ];
    const out = writeNacha(entries, settings, { createdAt });
    const { file, issues } = readAndValidate(out.text);
    expect(issues).toEqual([]);
    expect(file.batches[0]?.entries.map((e) => [e.transactionCode, e.amountMinor])).toEqual([
      ['23', 0],
      ['38', 0],
    ]);
    expect(() => writeNacha([entry({ prenote: true, amountMinor: 1 })], settings, { createdAt })).toThrow(
      /prenote carries no money/,
    );
    const creditOnly = writeNacha([entry({ prenote: true, amountMinor: 0 })], settings, { createdAt });
    expect(readAndValidate(creditOnly.text).file.batches[0]?.header.serviceClassCode).toBe('220');
  });

  it('validates its settings: routing check digits and the offset account', () => {
    expect(nachaSettingsSchema.safeParse(settings).success).toBe(true);
    expect(nachaSettingsSchema.safeParse({ ...settings, odfiRouting: '121042883' }).success).toBe(false);
    expect(nachaSettingsSchema.safeParse({ ...settings, immediateDestination: '23138010' }).success).toBe(
      false,
    );
    expect(nachaSettingsSchema.safeParse({ ...settings, balanced: true }).success).toBe(false);
    expect(nachaSettingsSchema.safeParse(balancedSettings).success).toBe(true);
  });

  it('continues trace sequences across files', () => {
    const first = writeNacha([entry()], settings, { createdAt, traceSequenceStart: 41 });
    expect(first.traces[0]?.traceNumber).toBe('121042880000041');
    expect(first.nextTraceSequence).toBe(42);
  });

  it('is deterministic', () => {
    const entries = [entry({ reference: 'x' }), entry({ reference: 'y', secCode: 'PPD' })];
    expect(writeNacha(entries, settings, { createdAt }).text).toBe(
      writeNacha(entries, settings, { createdAt }).text,
    );
  });

  const refusals: [string, Partial<WriteEntry>, string][] = [
    ['a routing number with a bad check digit', { routingNumber: '231380105' }, 'routingNumber'],
    ['an amount over the 10-digit field', { amountMinor: 10_000_000_000 }, 'amountMinor'],
    ['a fractional amount', { amountMinor: 10.5 }, 'amountMinor'],
    ['a zero amount', { amountMinor: 0 }, 'amountMinor'],
    ['a non-ASCII name', { name: 'Zoë Café' }, 'name'],
    ['an account number longer than 17', { accountNumber: '123456789012345678' }, 'accountNumber'],
    ['an impossible date', { effectiveDate: '2026-02-30' }, 'effectiveDate'],
  ];
  for (const [what, overrides, field] of refusals) {
    it(`refuses ${what}, naming the field`, () => {
      let caught: unknown;
      try {
        writeNacha([entry(overrides)], settings, { createdAt });
      } catch (err) {
        caught = err;
      }
      expect(caught).toBeInstanceOf(NachaWriteError);
      expect((caught as NachaWriteError).field).toBe(field);
      expect((caught as NachaWriteError).reference).toBe('pay_1');
    });
  }

  it('refuses balanced settings without an offset account', () => {
    expect(() => writeNacha([entry()], { ...settings, balanced: true }, { createdAt })).toThrow(
      /offsetAccount/,
    );
  });

  it('round-trips the 10,000-entry reference file', () => {
    const source = readNacha(readRef('cmd/readACH/201805101354.ach'), '201805101354.ach').file;
    const entries: WriteEntry[] = source.batches.flatMap((b) =>
      b.entries.map((e) => ({
        reference: e.traceNumber,
        secCode: 'PPD' as const,
        direction: e.transactionCode === '22' ? ('credit' as const) : ('debit' as const),
        company: {
          name: b.header.companyName,
          identification: b.header.companyIdentification.trim(),
          entryDescription: b.header.companyEntryDescription,
        },
        effectiveDate: `20${b.header.effectiveEntryDate.slice(0, 2)}-${b.header.effectiveEntryDate.slice(2, 4)}-${b.header.effectiveEntryDate.slice(4)}`,
        routingNumber: e.rdfiIdentification + e.checkDigit,
        accountNumber: e.accountNumber,
        accountType: 'checking' as const,
        amountMinor: e.amountMinor,
        name: e.name,
        identificationNumber: e.identificationNumber,
        addenda: e.addenda[0]?.paymentRelatedInformation,
      })),
    );
    expect(entries.length).toBe(5_000);
    const out = writeNacha(entries, settings, { createdAt });
    const { file, issues } = readAndValidate(out.text, 'roundtrip.ach');
    expect(issues).toEqual([]);
    expect(file.control?.entryAddendaCount).toBe(source.control?.entryAddendaCount);
    expect(file.control?.entryHash).toBe(source.control?.entryHash);
    expect(file.control?.totalCreditMinor).toBe(source.control?.totalCreditMinor);
    const back = readBack(file);
    for (const [i, t] of out.traces.entries())
      expect(back.get(t.traceNumber)).toEqual(expected(entries[i] as WriteEntry));
  });
});

describe('writeNacha offsets wider than one entry', () => {
  it('splits a net over 99,999,999.99 into several offset entries', () => {
    const out = writeNacha(
      [
        entry({ reference: 'a', amountMinor: 9_999_999_999 }),
        entry({ reference: 'b', amountMinor: 9_999_999_999 }),
      ],
      balancedSettings,
      { createdAt: new Date('2026-11-26T09:30:00Z') },
    );
    expect(out.offsets.map((o) => o.amountMinor)).toEqual([9_999_999_999, 9_999_999_999]);
    expect(readAndValidate(out.text).issues).toEqual([]);
  });
});
