import { describe, expect, it } from 'vitest';
import { readAndValidate } from '../../src/gateways/nacha/validator.js';
import { indexedFiles, readRef } from './support.js';

const files = indexedFiles();

/**
 * For each INVALID file: what INDEX.md says the reason is (checked, so a changed INDEX fails here)
 * and what our validator must say, at which line.
 */
const invalidReasons: Record<string, { index: RegExp; ours: RegExp; line: number }> = {
  'test/testdata/adv-noFileControl.ach': {
    index: /missing File Control/,
    ours: /missing file control record \(9\)/,
    line: 5,
  },
  'test/testdata/ppd-debit-invalid-entryDetail-checkDigit.ach': {
    index: /RDFI check digit wrong/,
    ours: /RDFI routing 231380105 has an invalid check digit/,
    line: 3,
  },
};

describe('moov-io reference files (INDEX.md)', () => {
  it('lists the files we expect, so a silently empty index cannot pass', () => {
    expect(files.filter((f) => f.verdict === 'VALID').length).toBeGreaterThan(50);
    expect(
      files
        .filter((f) => f.verdict === 'INVALID')
        .map((f) => f.path)
        .sort(),
    ).toEqual(Object.keys(invalidReasons).sort());
  });

  for (const f of files.filter((x) => x.verdict === 'VALID')) {
    it(`reads and validates VALID ${f.path}`, () => {
      const { file, issues } = readAndValidate(readRef(f.path), f.path);
      expect(issues).toEqual([]);
      expect(file.header).not.toBeNull();
      expect(file.control).not.toBeNull();
      expect(file.batches.length).toBeGreaterThan(0);
      expect(file.batches.every((b) => b.entries.length > 0 && b.control !== null)).toBe(true);
    });
  }

  for (const f of files.filter((x) => x.verdict === 'INVALID')) {
    it(`refuses INVALID ${f.path} for the reason INDEX.md gives`, () => {
      const expected = invalidReasons[f.path];
      expect(expected, `no expected reason recorded for ${f.path}`).toBeDefined();
      if (!expected) return;
      expect(f.text).toMatch(expected.index);
      const { issues } = readAndValidate(readRef(f.path), f.path);
      expect(issues.length).toBeGreaterThan(0);
      expect(issues).toContainEqual({ line: expected.line, reason: expect.stringMatching(expected.ours) });
    });
  }

  it('refuses the Windows-1252 nonascii.ach (INDEX: encoding case) at the first non-ASCII record', () => {
    const entry = files.find((f) => f.path === 'test/testdata/nonascii.ach');
    expect(entry?.text).toMatch(/Windows-1252/);
    const { issues } = readAndValidate(readRef('test/testdata/nonascii.ach'), 'nonascii.ach');
    expect(issues[0]).toEqual({
      line: 3,
      reason: 'entry detail contains characters outside printable ASCII',
    });
  });

  it('reads the 10,000-entry file whose entry hash overflows ten digits', () => {
    const { file, issues } = readAndValidate(readRef('cmd/readACH/201805101354.ach'), '201805101354.ach');
    expect(issues).toEqual([]);
    expect(file.control?.entryAddendaCount).toBe(10_000);
    expect(file.batches.reduce((n, b) => n + b.entries.length, 0)).toBe(5_000);
  });

  it('reads ADV and IAT layouts with their own field positions', () => {
    const adv = readAndValidate(readRef('examples/testdata/adv-read.ach'), 'adv-read.ach').file;
    expect(adv.batches[0]?.entries.map((e) => [e.transactionCode, e.amountMinor, e.accountNumber])).toEqual([
      ['81', 50000, '744-5678-99'],
      ['82', 250000, '744-5678-99'],
    ]);
    const iat = readAndValidate(readRef('examples/testdata/iat-mixedCreditDebit.ach'), 'iat.ach').file;
    expect(
      iat.batches[0]?.entries.map((e) => [
        e.transactionCode,
        e.amountMinor,
        e.addenda.map((a) => a.typeCode).join(','),
      ]),
    ).toEqual([
      ['27', 100000, '10,11,12,13,14,15,16,17,18'],
      ['22', 100000, '10,11,12,13,14,15,16,17,18'],
    ]);
  });
});
