/**
 * `paygate ach validate FILE...` as a user runs it (the built CLI, no database): every file INDEX.md
 * marks VALID exits 0; each INVALID one exits 1 with `FILE:LINE: reason` naming what INDEX.md says.
 */
import { describe, expect, it } from 'vitest';
import { indexedFiles, refPath } from '../nacha/support.js';
import { runCli } from '../support/cli.js';

const files = indexedFiles();
const valid = files.filter((f) => f.verdict === 'VALID').map((f) => refPath(f.path));

/** What INDEX.md says about each INVALID file, and the line and words our stderr must carry. */
const invalid: Record<string, { index: RegExp; line: number; reason: RegExp }> = {
  'test/testdata/adv-noFileControl.ach': {
    index: /missing File Control/,
    line: 5,
    reason: /missing file control record/,
  },
  'test/testdata/ppd-debit-invalid-entryDetail-checkDigit.ach': {
    index: /RDFI check digit wrong/,
    line: 3,
    reason: /invalid check digit/,
  },
};

describe('paygate ach validate', () => {
  it('accepts every VALID reference file in one call: exit 0, nothing on stderr', async () => {
    expect(valid.length).toBeGreaterThan(50);
    const result = await runCli(['ach', 'validate', ...valid, '--json']);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const out = JSON.parse(result.stdout) as { file: string; valid: boolean }[];
    expect(out.map((r) => r.file)).toEqual(valid);
    expect(out.every((r) => r.valid)).toBe(true);
  });

  it('lists exactly the INVALID files we have expectations for', () => {
    expect(
      files
        .filter((f) => f.verdict === 'INVALID')
        .map((f) => f.path)
        .sort(),
    ).toEqual(Object.keys(invalid).sort());
  });

  for (const f of files.filter((x) => x.verdict === 'INVALID')) {
    it(`refuses INVALID ${f.path}: exit 1 and FILE:LINE: reason`, async () => {
      const expected = invalid[f.path]!;
      expect(f.text).toMatch(expected.index);
      const file = refPath(f.path);
      const result = await runCli(['ach', 'validate', file]);
      expect(result.code).toBe(1);
      const lines = result.stderr.trim().split('\n');
      expect(lines.length).toBeGreaterThan(0);
      for (const line of lines) expect(line.startsWith(`${file}:`)).toBe(true);
      expect(lines.some((l) => l.startsWith(`${file}:${expected.line}: `) && expected.reason.test(l))).toBe(
        true,
      );
    });
  }

  it('a mix of valid and invalid files exits 1 and names only the invalid one', async () => {
    const good = refPath('test/testdata/return-WEB.ach');
    const bad = refPath('test/testdata/ppd-debit-invalid-entryDetail-checkDigit.ach');
    const result = await runCli(['ach', 'validate', good, bad]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`${bad}:3: `);
    expect(result.stderr).not.toContain(good);
    expect(result.stdout).toContain(`${good}: valid`);
  });

  it('a missing file is invalid, not a crash', async () => {
    const missing = refPath('test/testdata/no-such-file.ach');
    const result = await runCli(['ach', 'validate', missing]);
    expect(result.code).toBe(1);
    expect(result.stderr.trim()).toBe(`${missing}: no such file`);
  });
});
