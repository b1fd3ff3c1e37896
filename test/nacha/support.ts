import { readFileSync } from 'node:fs';
import path from 'node:path';
import { referenceRoot } from '../support/reference.js';

/** moov-io/ach's test files, read where they stand (never copied into the project). */
export const achReference = path.join(referenceRoot, 'ach');

export function refPath(relative: string): string {
  return path.join(achReference, relative);
}

export function readRef(relative: string): Buffer {
  return readFileSync(refPath(relative));
}

export interface IndexedFile {
  /** Path relative to the reference folder, e.g. test/testdata/return-WEB.ach. */
  path: string;
  verdict: 'VALID' | 'INVALID' | 'UNCLASSIFIED';
  /** The INDEX.md line, whose wording the INVALID expectations are matched against. */
  text: string;
}

/** Every file INDEX.md lists, with the verdict it gives. */
export function indexedFiles(): IndexedFile[] {
  const index = readFileSync(path.join(achReference, 'INDEX.md'), 'utf8');
  const files: IndexedFile[] = [];
  let dir = '';
  for (const line of index.split('\n')) {
    const heading = /^## (.+\/)\s*$/.exec(line);
    if (heading?.[1]) {
      dir = heading[1];
      continue;
    }
    const item = /^- `([^`]+)`/.exec(line);
    if (!item?.[1]) continue;
    const verdict = /— INVALID/.test(line) ? 'INVALID' : /— VALID/.test(line) ? 'VALID' : 'UNCLASSIFIED';
    files.push({ path: dir + item[1], verdict, text: line });
  }
  return files;
}
