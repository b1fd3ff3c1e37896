/** Reference data no one here wrote: read where it stands, beside the repository (never copied in). */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const referenceRoot = path.resolve(repoRoot, '../shared/reference');

export function readReferenceJson<T = unknown>(relative: string): T {
  return JSON.parse(readFileSync(path.join(referenceRoot, relative), 'utf8')) as T;
}

export function readReferenceText(relative: string): string {
  return readFileSync(path.join(referenceRoot, relative), 'utf8');
}
