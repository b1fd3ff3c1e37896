import { describe, expect, it } from 'vitest';
import { readNacha } from '../../src/gateways/nacha/reader.js';
import { formatIssue, readAndValidate } from '../../src/gateways/nacha/validator.js';
import { readRef } from './support.js';

const ppd = readRef('test/testdata/web-debit.ach').toString('latin1');
const lines = ppd.split('\n').filter((l) => l !== '');

function entriesOf(text: string) {
  const { file, issues } = readAndValidate(text, 'x.ach');
  return {
    issues,
    entries: file.batches.flatMap((b) =>
      b.entries.map((e) => [e.traceNumber, e.transactionCode, e.amountMinor, e.name]),
    ),
  };
}

describe('line shapes real banks send', () => {
  const baseline = entriesOf(ppd);

  it('baseline reads 3 batches', () => {
    expect(baseline.issues).toEqual([]);
    expect(baseline.entries.length).toBeGreaterThan(2);
  });

  const shapes: Record<string, string> = {
    CRLF: `${lines.join('\r\n')}\r\n`,
    'bare CR': lines.join('\r'),
    'no final newline': lines.join('\n'),
    'no newlines at all (records concatenated)': lines.join(''),
    'right-trimmed records': `${lines.map((l) => l.trimEnd()).join('\n')}\n`,
    'trailing blanks after each record': `${lines.map((l) => `${l}      `).join('\n')}\n`,
    'blank lines at the end': `${lines.join('\n')}\n\n\n`,
    'a UTF-8 byte-order mark and a DOS end-of-file Ctrl-Z': `\u00ef\u00bb\u00bf${lines.join('\r\n')}\r\n\x1a`,
  };
  for (const [name, text] of Object.entries(shapes)) {
    it(`reads ${name} to the same entries`, () => {
      expect(entriesOf(text)).toEqual(baseline);
    });
  }

  it('numbers records when the file has no newlines, so FILE:LINE still points somewhere useful', () => {
    const broken = lines.map((l, i) => (i === 2 ? `${l.slice(0, 11)}9${l.slice(12)}` : l)).join('');
    const { file, issues } = readAndValidate(broken, 'one-line.ach');
    expect(file.concatenated).toBe(true);
    expect(issues.map((i) => formatIssue('one-line.ach', i))).toContain(
      'one-line.ach:3: entry detail RDFI routing 081000219 has an invalid check digit (expected 0)',
    );
  });
});

/** Replace characters from..to (1-based, inclusive) of line n (1-based) of the base file. */
function mutate(n: number, from: number, value: string, base = lines): string {
  return base
    .map((l, i) => (i === n - 1 ? l.slice(0, from - 1) + value + l.slice(from - 1 + value.length) : l))
    .join('\n');
}

describe('validator rejects, at the right line', () => {
  // web-debit.ach: line 1 file header, 2 batch header, 3-6 entries, 7 batch control, then two more batches.
  const at = (text: string) => readAndValidate(text, 'f.ach').issues.map((i) => `${i.line}: ${i.reason}`);
  const cases: [string, string, RegExp][] = [
    [
      'wrong batch entry hash',
      mutate(7, 11, '0000000001'),
      /^7: batch control entry hash 0000000001 does not match/,
    ],
    [
      'wrong batch credit total',
      mutate(7, 33, '000000000001'),
      /^7: batch control total credit 0\.01 does not match/,
    ],
    [
      'wrong entry/addenda count',
      mutate(7, 5, '000009'),
      /^7: batch control entry\/addenda count 9 does not match/,
    ],
    [
      'batch number mismatch',
      mutate(7, 88, '0000009'),
      /^7: batch control batch number 0000009 does not match/,
    ],
    [
      'debit code in a credits-only batch',
      mutate(3, 2, '27'),
      /^3: entry detail transaction code 27 is a debit in a credits-only batch/,
    ],
    ['unknown transaction code', mutate(3, 2, '99'), /^3: entry detail transaction code "99" is not valid/],
    ['non-digit amount', mutate(3, 30, '00000ABC00'), /^3: entry detail amount must be digits/],
    [
      'addenda indicator without addenda',
      mutate(3, 79, '1'),
      /^3: entry detail addenda record indicator is 1 but 0 addenda records follow/,
    ],
    ['bad file id modifier', mutate(1, 34, '*'), /^1: file header file id modifier "\*" must be A-Z or 0-9/],
    ['bad record size', mutate(1, 35, '095'), /^1: file header record size "095" must be "094"/],
    [
      'bad creation date',
      mutate(1, 24, '191332'),
      /^1: file header creation date "191332" is not a YYMMDD date/,
    ],
    [
      'bad service class',
      mutate(2, 2, '210'),
      /^2: batch header service class code "210" must be 200, 220, 225 or 280/,
    ],
    [
      'unknown SEC code',
      mutate(2, 51, 'XYZ'),
      /^2: batch header standard entry class code "XYZ" is not a NACHA SEC code/,
    ],
    [
      'trace not from the ODFI',
      mutate(3, 80, '99999999'),
      /^3: entry detail trace number 99999999\d{7} does not start with the batch's ODFI/,
    ],
  ];
  for (const [name, text, reason] of cases) {
    it(name, () => {
      expect(at(text)).toContainEqual(expect.stringMatching(reason));
    });
  }

  it('trace numbers out of order', () => {
    const entryLines = lines.map((l, i) => [l, i] as const).filter(([l]) => l.startsWith('6'));
    const [a, b] = entryLines;
    if (!a || !b || b[1] !== a[1] + 1) throw new Error('fixture changed: expected two adjacent entries');
    const swapped = [...lines];
    swapped[a[1]] = b[0];
    swapped[b[1]] = a[0];
    expect(at(swapped.join('\n'))).toContainEqual(
      expect.stringMatching(new RegExp(`^${b[1] + 1}: trace number \\d+ is not greater than the previous`)),
    );
  });

  it('file control totals, hash, counts and blocks', () => {
    const n = lines.findIndex((l) => l.startsWith('9') && !/^9+$/.test(l)) + 1;
    expect(at(mutate(n, 2, '000009'))).toContainEqual(
      expect.stringMatching(new RegExp(`^${n}: file control batch count 9 does not match`)),
    );
    expect(at(mutate(n, 8, '000009'))).toContainEqual(
      expect.stringMatching(new RegExp(`^${n}: file control block count 9 does not match`)),
    );
    expect(at(mutate(n, 22, '0000000001'))).toContainEqual(
      expect.stringMatching(new RegExp(`^${n}: file control entry hash 0000000001`)),
    );
    expect(at(mutate(n, 32, '000000000001'))).toContainEqual(
      expect.stringMatching(new RegExp(`^${n}: file control total debit 0\\.01`)),
    );
  });

  it('padding that is not to a whole block, and records after the file control', () => {
    const withExtraPad = `${lines.join('\n')}\n${'9'.repeat(94)}\n`;
    expect(at(withExtraPad)).toContainEqual(
      expect.stringMatching(/padded to 21 records, not a multiple of 10/),
    );
    const withJunk = `${lines.join('\n')}\n${lines[2]}\n`;
    expect(at(withJunk)).toContainEqual(expect.stringMatching(/record after the file control record/));
  });

  it('structural problems the reader reports', () => {
    expect(readNacha(lines.slice(1).join('\n')).issues[0]?.reason).toBe('missing file header record (1)');
    const noBatchControl = lines.filter((_, i) => i !== 6).join('\n');
    expect(at(noBatchControl)).toContainEqual(
      expect.stringMatching(
        /^7: batch header record \(5\) before the batch control record \(8\) of the batch at line 2/,
      ),
    );
    expect(at(mutate(3, 1, 'X'))).toContainEqual(expect.stringMatching(/^3: unknown record type "X"/));
  });
});
