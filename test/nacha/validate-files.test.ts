import { describe, expect, it } from 'vitest';
import { validateFiles } from '../../src/gateways/nacha/validate-files.js';
import { formatIssue } from '../../src/gateways/nacha/validator.js';
import { refPath } from './support.js';

describe('validateFiles (paygate ach validate FILE...)', () => {
  it('reports each file with ok and FILE:LINE: reason', async () => {
    const good = refPath('test/testdata/return-WEB.ach');
    const bad = refPath('test/testdata/ppd-debit-invalid-entryDetail-checkDigit.ach');
    const missing = refPath('test/testdata/does-not-exist.ach');
    const results = await validateFiles([good, bad, missing]);
    expect(results.map((r) => [r.file, r.ok])).toEqual([
      [good, true],
      [bad, false],
      [missing, false],
    ]);
    expect(results[0]?.errors).toEqual([]);
    expect(results[1]?.errors.map((e) => formatIssue(bad, e))).toEqual([
      `${bad}:3: entry detail RDFI routing 231380105 has an invalid check digit (expected 4)`,
    ]);
    expect(results[2]?.errors.map((e) => formatIssue(missing, e))).toEqual([`${missing}: no such file`]);
  });
});
