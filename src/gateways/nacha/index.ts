/** The NACHA file layer: read, validate, write, and reduce return files. See docs/nacha.md. */
export * from './reader.js';
export * from './returns.js';
export * from './validate-files.js';
export * from './validator.js';
export * from './writer.js';
