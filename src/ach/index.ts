/** The NACHA workflow on top of the file layer (src/gateways/nacha/): see docs/nacha.md. */
export * from './corrections.js';
export * from './deps.js';
export * from './export.js';
export * from './files.js';
export * from './import-returns.js';
export * from './settings.js';
export * from './settlement.js';
