/**
 * `paygate ach validate FILE...`: read and validate each file and say, per file, whether it is valid
 * and why not (line and reason). The CLI prints `FILE:LINE: reason` (formatIssue) for each issue and
 * exits 1 when any file is invalid. The only I/O in the nacha folder is this file read.
 */

import { readFile } from 'node:fs/promises';
import type { NachaIssue } from './reader.js';
import { readAndValidate } from './validator.js';

export interface FileValidation {
  file: string;
  ok: boolean;
  errors: NachaIssue[];
}

export async function validateFiles(paths: readonly string[]): Promise<FileValidation[]> {
  const results: FileValidation[] = [];
  for (const file of paths) {
    let bytes: Buffer;
    try {
      bytes = await readFile(file);
    } catch (err) {
      const reason =
        (err as NodeJS.ErrnoException).code === 'ENOENT'
          ? 'no such file'
          : `cannot read: ${(err as Error).message}`;
      // Line 0: the file as a whole; formatIssue prints it as FILE: reason.
      results.push({ file, ok: false, errors: [{ line: 0, reason }] });
      continue;
    }
    const { issues } = readAndValidate(bytes, file);
    results.push({ file, ok: issues.length === 0, errors: issues });
  }
  return results;
}
