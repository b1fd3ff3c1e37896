/**
 * NACHA file validator: everything a receiving ACH operator would refuse a file for, reported as
 * FILE:LINE: reason. It checks what the reader built (reader.ts) and never re-parses.
 *
 * What is checked, and why each matters to a bank:
 * - structure: the reader's issues (unknown record types, records out of place, missing controls);
 * - file header: priority code, immediate destination routing number, creation date/time, file id
 *   modifier, record size 094, blocking factor 10, format code 1;
 * - batch header: service class code, SEC code, company identification, effective entry date, ODFI
 *   routing, batch number; the batch control repeats service class, company id, ODFI and batch number;
 * - entries: transaction code known and allowed by the service class (220 credits only, 225 debits
 *   only, 280 ADV codes only), RDFI routing check digit, amount digits, prenotes at zero, addenda
 *   indicator agreeing with the addenda present, trace numbers ascending within the batch and (for
 *   originated entries) starting with the ODFI's routing. Uniqueness across batches is not required:
 *   moov-io's 10,000-entry file restarts its sequence in every batch and banks accept it (our writer
 *   never repeats one);
 * - addenda: 05 sequence numbers 1, 2, 3... and their entry detail sequence number matching the trace;
 *   98 only in COR batches, 99 only on return entries;
 * - control totals: entry/addenda count, entry hash (the rightmost 10 digits of the sum of RDFI
 *   routings, so a 10,000-entry file whose sum overflows still validates), total debits and credits,
 *   for each batch and for the file; batch count; block count and padding to a multiple of ten;
 * - field formats: numeric fields hold digits; alphanumeric fields hold printable ASCII only.
 */

import type { Addenda, Batch, EntryDetail, NachaFile, NachaIssue } from './reader.js';
import { BLOCKING_FACTOR, readNacha } from './reader.js';

/** Kind of money movement a transaction code stands for. */
export type EntryDirection = 'credit' | 'debit';

/**
 * Standard transaction codes: tens digit is the account type (2 checking, 3 savings, 4 general
 * ledger, 5 loan), units digit the kind (1 return/NOC credit, 2 credit, 3 prenote credit, 4 zero-dollar
 * credit; 6 return/NOC debit, 7 debit, 8 prenote debit, 9 zero-dollar debit). Loan accounts take no
 * debits except 55 (automated loan reversal) and 56 (return/NOC).
 */
export function transactionDirection(code: string): EntryDirection | null {
  if (!/^\d\d$/.test(code)) return null;
  const account = code[0];
  const kind = Number(code[1]);
  if (account === '5') {
    if (kind >= 1 && kind <= 4) return 'credit';
    if (kind === 5 || kind === 6) return 'debit';
    return null;
  }
  if (account === '2' || account === '3' || account === '4') {
    if (kind >= 1 && kind <= 4) return 'credit';
    if (kind >= 6 && kind <= 9) return 'debit';
    return null;
  }
  if (account === '8') {
    // ADV: odd codes credit, even codes debit (81..88).
    if (kind >= 1 && kind <= 8) return kind % 2 === 1 ? 'credit' : 'debit';
  }
  return null;
}

/** Prenotification (3, 8) and zero-dollar (4, 9) entries must carry no money. */
function isZeroAmountCode(code: string): boolean {
  return !code.startsWith('8') && ['3', '4', '8', '9'].includes(code[1] ?? '');
}

/** Return and NOC entries (x1, x6): the RDFI's own traces, not the ODFI's. */
function isReturnCode(code: string): boolean {
  return !code.startsWith('8') && (code[1] === '1' || code[1] === '6');
}

/** ABA routing-number check digit: weights 3, 7, 1 over the first eight digits. */
export function routingCheckDigit(first8: string): number {
  const w = [3, 7, 1, 3, 7, 1, 3, 7];
  let sum = 0;
  for (let i = 0; i < 8; i++) sum += Number(first8[i]) * (w[i] as number);
  return (10 - (sum % 10)) % 10;
}

/** True for a 9-digit routing number whose ninth digit is the check digit of the first eight. */
export function isValidRoutingNumber(routing: string): boolean {
  return /^\d{9}$/.test(routing) && routingCheckDigit(routing.slice(0, 8)) === Number(routing[8]);
}

/** The rightmost ten digits of the sum of the 8-digit RDFI identifications, as the control records carry it. */
export function entryHash(rdfiIdentifications: Iterable<string | number>): string {
  let sum = 0n;
  for (const r of rdfiIdentifications) sum += BigInt(r);
  return (sum % 10_000_000_000n).toString().padStart(10, '0');
}

const SERVICE_CLASSES = new Set(['200', '220', '225', '280']);
const SEC_CODES = new Set([
  'ACK',
  'ADV',
  'ARC',
  'ATX',
  'BOC',
  'CCD',
  'CIE',
  'COR',
  'CTX',
  'DNE',
  'ENR',
  'IAT',
  'MTE',
  'POP',
  'POS',
  'PPD',
  'RCK',
  'SHR',
  'TEL',
  'TRC',
  'TRX',
  'WEB',
  'XCK',
]);
const PRINTABLE_ASCII = /^[\x20-\x7e]*$/;

function isYYMMDD(s: string): boolean {
  const m = /^(\d\d)(\d\d)(\d\d)$/.exec(s);
  if (!m) return false;
  const month = Number(m[2]);
  const day = Number(m[3]);
  const daysIn = new Date(Date.UTC(2000 + Number(m[1]), month, 0)).getUTCDate();
  return month >= 1 && month <= 12 && day >= 1 && day <= daysIn;
}

function money(minor: number): string {
  return `${Math.floor(minor / 100)}.${String(minor % 100).padStart(2, '0')}`;
}

/** Validate a file the reader built; returns every issue found, ordered by line. */
export function validateNacha(file: NachaFile): NachaIssue[] {
  const issues: NachaIssue[] = [];
  const add = (line: number, reason: string) => issues.push({ line, reason });

  const h = file.header;
  if (h) {
    const at = h.line;
    if (!PRINTABLE_ASCII.test(h.raw)) add(at, 'file header contains characters outside printable ASCII');
    if (h.priorityCode !== '01')
      add(at, `file header priority code ${JSON.stringify(h.priorityCode)} must be "01"`);
    const dest = h.immediateDestination.trim();
    if (!/^\d{9,10}$/.test(dest))
      add(
        at,
        `file header immediate destination ${JSON.stringify(h.immediateDestination)} must be a 9-digit routing number`,
      );
    else if (!isValidRoutingNumber(dest.slice(-9)))
      add(at, `file header immediate destination ${dest.slice(-9)} has an invalid routing check digit`);
    if (!/^[ \d]\d{9}$/.test(h.immediateOrigin)) {
      add(at, `file header immediate origin ${JSON.stringify(h.immediateOrigin)} must be 9 or 10 digits`);
    }
    if (!isYYMMDD(h.fileCreationDate))
      add(at, `file header creation date ${JSON.stringify(h.fileCreationDate)} is not a YYMMDD date`);
    if (h.fileCreationTime.trim() !== '' && !/^([01]\d|2[0-3])[0-5]\d$/.test(h.fileCreationTime)) {
      add(at, `file header creation time ${JSON.stringify(h.fileCreationTime)} is not HHMM`);
    }
    if (!/^[A-Z0-9]$/.test(h.fileIdModifier))
      add(at, `file header file id modifier ${JSON.stringify(h.fileIdModifier)} must be A-Z or 0-9`);
    if (h.recordSize !== '094')
      add(at, `file header record size ${JSON.stringify(h.recordSize)} must be "094"`);
    if (h.blockingFactor !== '10')
      add(at, `file header blocking factor ${JSON.stringify(h.blockingFactor)} must be "10"`);
    if (h.formatCode !== '1') add(at, `file header format code ${JSON.stringify(h.formatCode)} must be "1"`);
  }

  let fileEntryAddenda = 0;
  let fileDebit = 0;
  let fileCredit = 0;
  const fileRdfis: string[] = [];
  let previousBatchNumber = 0;
  for (const batch of file.batches) {
    const counts = validateBatch(batch, add);
    fileEntryAddenda += counts.entryAddenda;
    fileDebit += counts.debit;
    fileCredit += counts.credit;
    for (const e of batch.entries)
      fileRdfis.push(/^\d{8}$/.test(e.rdfiIdentification) ? e.rdfiIdentification : '0');
    const n = Number(batch.header.batchNumber);
    if (/^\d{7}$/.test(batch.header.batchNumber) && n <= previousBatchNumber) {
      add(
        batch.header.line,
        `batch number ${n} is not greater than the previous batch's ${previousBatchNumber}`,
      );
    }
    if (Number.isFinite(n)) previousBatchNumber = Math.max(previousBatchNumber, n);
  }

  const c = file.control;
  if (c) {
    const at = c.line;
    for (const m of c.malformed) add(at, `file control ${m} must be digits`);
    if (c.batchCount !== file.batches.length)
      add(
        at,
        `file control batch count ${c.batchCount} does not match the ${file.batches.length} batches in the file`,
      );
    if (c.entryAddendaCount !== fileEntryAddenda) {
      add(
        at,
        `file control entry/addenda count ${c.entryAddendaCount} does not match the ${fileEntryAddenda} entry and addenda records in the file`,
      );
    }
    const hash = entryHash(fileRdfis);
    if (c.entryHash !== hash)
      add(at, `file control entry hash ${c.entryHash} does not match the computed ${hash}`);
    if (c.totalDebitMinor !== fileDebit)
      add(
        at,
        `file control total debit ${money(c.totalDebitMinor)} does not match the entries' ${money(fileDebit)}`,
      );
    if (c.totalCreditMinor !== fileCredit)
      add(
        at,
        `file control total credit ${money(c.totalCreditMinor)} does not match the entries' ${money(fileCredit)}`,
      );
    const contentRecords = file.recordCount - file.paddingLines;
    const blocks = Math.ceil(contentRecords / BLOCKING_FACTOR);
    if (c.blockCount !== blocks)
      add(
        at,
        `file control block count ${c.blockCount} does not match the ${blocks} blocks of ${contentRecords} records`,
      );
    if (file.paddingLines > 0 && file.recordCount % BLOCKING_FACTOR !== 0) {
      add(
        file.lastLine,
        `file is padded to ${file.recordCount} records, not a multiple of ${BLOCKING_FACTOR}`,
      );
    }
    if (file.paddingLines >= BLOCKING_FACTOR)
      add(
        file.lastLine,
        `file has ${file.paddingLines} padding lines; a whole block of padding is not allowed`,
      );
  }
  return issues.sort((a, b) => a.line - b.line);
}

function validateBatch(
  batch: Batch,
  add: (line: number, reason: string) => void,
): { entryAddenda: number; debit: number; credit: number } {
  const bh = batch.header;
  const at = bh.line;
  const sec = bh.standardEntryClassCode;
  const adv = bh.serviceClassCode === '280';
  if (!PRINTABLE_ASCII.test(bh.raw)) add(at, 'batch header contains characters outside printable ASCII');
  if (!SERVICE_CLASSES.has(bh.serviceClassCode))
    add(
      at,
      `batch header service class code ${JSON.stringify(bh.serviceClassCode)} must be 200, 220, 225 or 280`,
    );
  if (!SEC_CODES.has(sec))
    add(at, `batch header standard entry class code ${JSON.stringify(sec)} is not a NACHA SEC code`);
  if (adv !== (sec === 'ADV'))
    add(
      at,
      `batch header service class ${bh.serviceClassCode} does not go with SEC code ${sec} (280 is for ADV only)`,
    );
  if (bh.companyIdentification.trim() === '') add(at, 'batch header company identification is blank');
  if (sec !== 'IAT' && bh.companyName.trim() === '') add(at, 'batch header company name is blank');
  if (bh.companyEntryDescription.trim() === '') add(at, 'batch header company entry description is blank');
  // Returns and NOCs generated by an RDFI may carry a zero effective date; anything else must be a date.
  if (
    bh.effectiveEntryDate !== '000000' &&
    bh.effectiveEntryDate.trim() !== '' &&
    !isYYMMDD(bh.effectiveEntryDate)
  ) {
    add(
      at,
      `batch header effective entry date ${JSON.stringify(bh.effectiveEntryDate)} is not a YYMMDD date`,
    );
  }
  if (!/^(\d{3}| {3})$/.test(bh.settlementDate))
    add(
      at,
      `batch header settlement date ${JSON.stringify(bh.settlementDate)} must be a Julian day or blank`,
    );
  if (!/^\d{8}$/.test(bh.odfiIdentification))
    add(at, `batch header ODFI identification ${JSON.stringify(bh.odfiIdentification)} must be 8 digits`);
  if (!/^\d{7}$/.test(bh.batchNumber))
    add(at, `batch header batch number ${JSON.stringify(bh.batchNumber)} must be 7 digits`);

  let entryAddenda = 0;
  let debit = 0;
  let credit = 0;
  let previousTrace = -1n;
  for (const e of batch.entries) {
    entryAddenda += 1 + e.addenda.length;
    const direction = validateEntry(e, batch, add);
    if (direction === 'debit') debit += e.amountMinor;
    if (direction === 'credit') credit += e.amountMinor;
    if (/^\d{15}$/.test(e.traceNumber)) {
      const trace = BigInt(e.traceNumber);
      if (trace <= previousTrace)
        add(
          e.line,
          `trace number ${e.traceNumber} is not greater than the previous entry's; trace numbers must ascend within a batch`,
        );
      previousTrace = trace;
    }
  }

  const c = batch.control;
  if (c) {
    const cat = c.line;
    if (!PRINTABLE_ASCII.test(c.raw)) add(cat, 'batch control contains characters outside printable ASCII');
    for (const m of c.malformed) add(cat, `batch control ${m} must be digits`);
    if (c.serviceClassCode !== bh.serviceClassCode) {
      add(
        cat,
        `batch control service class code ${c.serviceClassCode} does not match the batch header's ${bh.serviceClassCode}`,
      );
    }
    // Compared trimmed: banks justify this alphanumeric field either way (moov-io's return-WEB.ach).
    // IAT batch controls leave it blank: the originator identification lives in the IAT header only.
    if (!adv && sec !== 'IAT' && c.companyIdentification.trim() !== bh.companyIdentification.trim()) {
      add(
        cat,
        `batch control company identification ${JSON.stringify(c.companyIdentification)} does not match the batch header's ${JSON.stringify(bh.companyIdentification)}`,
      );
    }
    if (c.odfiIdentification !== bh.odfiIdentification) {
      add(
        cat,
        `batch control ODFI identification ${c.odfiIdentification} does not match the batch header's ${bh.odfiIdentification}`,
      );
    }
    if (c.batchNumber !== bh.batchNumber)
      add(
        cat,
        `batch control batch number ${c.batchNumber} does not match the batch header's ${bh.batchNumber}`,
      );
    if (c.entryAddendaCount !== entryAddenda) {
      add(
        cat,
        `batch control entry/addenda count ${c.entryAddendaCount} does not match the ${entryAddenda} entry and addenda records in the batch`,
      );
    }
    const hash = entryHash(
      batch.entries.map((e) => (/^\d{8}$/.test(e.rdfiIdentification) ? e.rdfiIdentification : '0')),
    );
    if (c.entryHash !== hash)
      add(cat, `batch control entry hash ${c.entryHash} does not match the computed ${hash}`);
    if (c.totalDebitMinor !== debit)
      add(
        cat,
        `batch control total debit ${money(c.totalDebitMinor)} does not match the entries' ${money(debit)}`,
      );
    if (c.totalCreditMinor !== credit)
      add(
        cat,
        `batch control total credit ${money(c.totalCreditMinor)} does not match the entries' ${money(credit)}`,
      );
  }
  return { entryAddenda, debit, credit };
}

function validateEntry(
  e: EntryDetail,
  batch: Batch,
  add: (line: number, reason: string) => void,
): EntryDirection | null {
  const bh = batch.header;
  const sec = bh.standardEntryClassCode;
  const at = e.line;
  if (!PRINTABLE_ASCII.test(e.raw)) add(at, 'entry detail contains characters outside printable ASCII');
  for (const m of e.malformed) add(at, `entry detail ${m} must be digits`);
  const direction = transactionDirection(e.transactionCode);
  const adv = bh.serviceClassCode === '280';
  if (direction === null || adv !== e.transactionCode.startsWith('8')) {
    add(
      at,
      `entry detail transaction code ${JSON.stringify(e.transactionCode)} is not valid${adv ? ' in an ADV batch' : ''}`,
    );
  } else if (bh.serviceClassCode === '220' && direction === 'debit') {
    add(
      at,
      `entry detail transaction code ${e.transactionCode} is a debit in a credits-only batch (service class 220)`,
    );
  } else if (bh.serviceClassCode === '225' && direction === 'credit') {
    add(
      at,
      `entry detail transaction code ${e.transactionCode} is a credit in a debits-only batch (service class 225)`,
    );
  }
  if (!/^\d{8}$/.test(e.rdfiIdentification) || !/^\d$/.test(e.checkDigit)) {
    add(
      at,
      `entry detail RDFI routing ${JSON.stringify(e.rdfiIdentification + e.checkDigit)} must be 9 digits`,
    );
  } else if (routingCheckDigit(e.rdfiIdentification) !== Number(e.checkDigit)) {
    add(
      at,
      `entry detail RDFI routing ${e.rdfiIdentification}${e.checkDigit} has an invalid check digit (expected ${routingCheckDigit(e.rdfiIdentification)})`,
    );
  }
  if (e.accountNumber === '') add(at, 'entry detail DFI account number is blank');
  if (direction && isZeroAmountCode(e.transactionCode) && e.amountMinor !== 0) {
    add(
      at,
      `entry detail transaction code ${e.transactionCode} is a prenote or zero-dollar entry but the amount is ${money(e.amountMinor)}`,
    );
  }
  if (!adv) {
    if (!/^\d{15}$/.test(e.traceNumber))
      add(at, `entry detail trace number ${JSON.stringify(e.traceNumber)} must be 15 digits`);
    // Originated entries carry the ODFI's routing in the trace; returns and NOCs carry the RDFI's.
    else if (
      !isReturnCode(e.transactionCode) &&
      sec !== 'COR' &&
      e.addenda.every((a) => a.typeCode !== '99') &&
      !e.traceNumber.startsWith(bh.odfiIdentification)
    ) {
      add(
        at,
        `entry detail trace number ${e.traceNumber} does not start with the batch's ODFI identification ${bh.odfiIdentification}`,
      );
    }
    if (e.addendaIndicator !== '0' && e.addendaIndicator !== '1') {
      add(at, `entry detail addenda record indicator ${JSON.stringify(e.addendaIndicator)} must be 0 or 1`);
    } else if ((e.addendaIndicator === '1') !== e.addenda.length > 0) {
      add(
        at,
        `entry detail addenda record indicator is ${e.addendaIndicator} but ${e.addenda.length} addenda records follow`,
      );
    }
  }
  // Each numbered addenda type counts its own sequence from 1 (an IAT entry has 17s and 18s).
  const sequences = new Map<string, number>();
  for (const a of e.addenda) {
    const expected = (sequences.get(a.typeCode) ?? 0) + 1;
    sequences.set(a.typeCode, expected);
    validateAddenda(a, e, sec, expected, add);
  }
  return direction;
}

function validateAddenda(
  a: Addenda,
  e: EntryDetail,
  sec: string,
  expectedSequence: number,
  add: (line: number, reason: string) => void,
): void {
  const at = a.line;
  if (!PRINTABLE_ASCII.test(a.raw)) add(at, 'addenda contains characters outside printable ASCII');
  const entrySequence = e.traceNumber.slice(-7);
  switch (a.typeCode) {
    case '05':
    case '17':
    case '18':
      if (a.sequenceNumber !== String(expectedSequence).padStart(4, '0')) {
        add(
          at,
          `addenda ${a.typeCode} sequence number ${JSON.stringify(a.sequenceNumber)} should be ${String(expectedSequence).padStart(4, '0')}`,
        );
      }
      if (a.entryDetailSequenceNumber !== entrySequence) {
        add(
          at,
          `addenda ${a.typeCode} entry detail sequence number ${a.entryDetailSequenceNumber} does not match the entry's trace number ${e.traceNumber}`,
        );
      }
      return;
    case '02':
    case '10':
    case '11':
    case '12':
    case '13':
    case '14':
    case '15':
    case '16':
      if (a.entryDetailSequenceNumber !== entrySequence) {
        add(
          at,
          `addenda ${a.typeCode} entry detail sequence number ${a.entryDetailSequenceNumber} does not match the entry's trace number ${e.traceNumber}`,
        );
      }
      return;
    case '98':
      if (sec !== 'COR')
        add(at, `addenda 98 (notification of change) in a ${sec} batch; NOCs belong in COR batches`);
      if (!/^C\d\d$/.test(a.reasonCode))
        add(at, `addenda 98 change code ${JSON.stringify(a.reasonCode)} must be C and two digits`);
      if (!/^\d{15}$/.test(a.originalTraceNumber))
        add(
          at,
          `addenda 98 original trace number ${JSON.stringify(a.originalTraceNumber)} must be 15 digits`,
        );
      return;
    case '99':
      if (!/^R\d\d$/.test(a.reasonCode))
        add(at, `addenda 99 return reason code ${JSON.stringify(a.reasonCode)} must be R and two digits`);
      if (!/^\d{15}$/.test(a.originalTraceNumber))
        add(
          at,
          `addenda 99 original trace number ${JSON.stringify(a.originalTraceNumber)} must be 15 digits`,
        );
      return;
    default:
      add(at, `addenda type code ${JSON.stringify(a.typeCode)} is not a NACHA addenda type`);
  }
}

/** Read and validate in one step: the reader's structural issues first, then the validator's. */
export function readAndValidate(
  input: string | Uint8Array,
  fileName = '<input>',
): { file: NachaFile; issues: NachaIssue[] } {
  const { file, issues } = readNacha(input, fileName);
  return { file, issues: [...issues, ...validateNacha(file)].sort((a, b) => a.line - b.line) };
}

/** The CLI's form of an issue: FILE:LINE: reason (FILE: reason when it concerns no line, e.g. unreadable). */
export function formatIssue(fileName: string, issue: NachaIssue): string {
  return issue.line > 0 ? `${fileName}:${issue.line}: ${issue.reason}` : `${fileName}: ${issue.reason}`;
}
