/**
 * NACHA file reader: turns the bytes a bank (or our writer) produced into typed records, keeping the
 * line each record came from so that every later complaint can say FILE:LINE: reason.
 *
 * The reader is deliberately tolerant of the *shape* of the text and strict about nothing else: it
 * accepts LF, CRLF or CR line ends, a missing final newline, records concatenated with no newlines at
 * all, right-trimmed (short) records, records followed by trailing blanks (long lines) and the lines of
 * 9s that pad a file to a multiple of ten records. Whether the *content* is a valid NACHA file is the
 * validator's job (validator.ts); the reader only reports what stops it from building the structure at
 * all (an unknown record type, a batch without a header, a missing file control).
 *
 * Pure code: no I/O. Field positions below are 1-based and inclusive, as the NACHA Operating Rules
 * print them, so they can be checked against the rule book line by line.
 */

/** Every NACHA record is exactly this many characters. */
export const RECORD_LENGTH = 94;
/** Records per block; a file is padded with lines of 9s to a whole number of blocks. */
export const BLOCKING_FACTOR = 10;

/** A complaint about a file, tied to the line (or, for a file without newlines, the record) it concerns. */
export interface NachaIssue {
  line: number;
  reason: string;
}

export interface FileHeader {
  line: number;
  raw: string;
  priorityCode: string;
  /** As written (10 characters, usually a blank and the 9-digit routing number). */
  immediateDestination: string;
  immediateOrigin: string;
  /** YYMMDD as written. */
  fileCreationDate: string;
  /** HHMM as written (may be blank). */
  fileCreationTime: string;
  fileIdModifier: string;
  recordSize: string;
  blockingFactor: string;
  formatCode: string;
  immediateDestinationName: string;
  immediateOriginName: string;
  referenceCode: string;
}

export interface BatchHeader {
  line: number;
  raw: string;
  /** 200 mixed, 220 credits only, 225 debits only, 280 automated accounting advices (ADV). */
  serviceClassCode: string;
  /** For IAT batches this span holds the IAT indicator and foreign-exchange fields instead. */
  companyName: string;
  companyDiscretionaryData: string;
  /** Company identification; for IAT the originator identification (same positions). */
  companyIdentification: string;
  standardEntryClassCode: string;
  companyEntryDescription: string;
  companyDescriptiveDate: string;
  /** YYMMDD as written. */
  effectiveEntryDate: string;
  settlementDate: string;
  originatorStatusCode: string;
  /** First eight digits of the ODFI's routing number. */
  odfiIdentification: string;
  batchNumber: string;
}

export interface BatchControl {
  line: number;
  raw: string;
  serviceClassCode: string;
  entryAddendaCount: number;
  /** As written (10 digits): compared as text so an overflowed hash keeps its leading zeros. */
  entryHash: string;
  totalDebitMinor: number;
  totalCreditMinor: number;
  companyIdentification: string;
  messageAuthenticationCode: string;
  odfiIdentification: string;
  batchNumber: string;
  /** Any numeric field above that did not hold digits: the validator reports these. */
  malformed: string[];
}

export interface FileControl {
  line: number;
  raw: string;
  batchCount: number;
  blockCount: number;
  entryAddendaCount: number;
  entryHash: string;
  totalDebitMinor: number;
  totalCreditMinor: number;
  malformed: string[];
}

/** Addenda 05 (and the terminal/POS addenda 02): free-form payment-related information. */
export interface Addenda {
  line: number;
  raw: string;
  /** 02, 05, 10..18 (IAT), 98 (notification of change), 99 (return, dishonored or contested return). */
  typeCode: string;
  /** 05: positions 4-83; 98/99: see returns.ts for their own fields. */
  paymentRelatedInformation: string;
  /** 05/IAT 17, 18: addenda sequence number (positions 84-87). */
  sequenceNumber: string;
  /** 05/02/IAT: last seven digits of the entry's trace number (positions 88-94). */
  entryDetailSequenceNumber: string;
  /** 98/99: return reason or change code (positions 4-6). */
  reasonCode: string;
  /** 98/99: the trace number of the entry being returned or corrected (positions 7-21). */
  originalTraceNumber: string;
  /** 98/99: the original RDFI (positions 28-35). */
  originalRdfi: string;
  /** 98/99: this addenda's own trace number (positions 80-94). */
  traceNumber: string;
}

export interface EntryDetail {
  line: number;
  raw: string;
  transactionCode: string;
  /** First eight digits of the receiving bank's routing number. */
  rdfiIdentification: string;
  checkDigit: string;
  /** Trimmed. For IAT the 35-character account at positions 40-74; for ADV positions 13-27. */
  accountNumber: string;
  amountMinor: number;
  /** PPD: individual id number; CCD: identification number (positions 40-54). Trimmed. */
  identificationNumber: string;
  /** PPD: individual name; CCD: receiving company name (positions 55-76). Trimmed. */
  name: string;
  discretionaryData: string;
  addendaIndicator: string;
  /** 15 digits: ODFI identification (8) + sequence (7). For ADV entries, positions 80-94 as written. */
  traceNumber: string;
  addenda: Addenda[];
  malformed: string[];
}

export interface Batch {
  header: BatchHeader;
  entries: EntryDetail[];
  /** Null when the file ended (or a new batch began) before the batch control record. */
  control: BatchControl | null;
}

export interface NachaFile {
  fileName: string;
  header: FileHeader | null;
  batches: Batch[];
  control: FileControl | null;
  /** Records counted for the block count: every record including padding lines of 9s. */
  recordCount: number;
  /** Lines of 9s after the file control record. */
  paddingLines: number;
  /** Line of the last record: where a complaint about the file as a whole (missing control, padding) points. */
  lastLine: number;
  /**
   * Records were concatenated with no line breaks: `line` then counts records (1-based), not lines.
   * Reported so messages can say "record" where a human looking for a line would be misled.
   */
  concatenated: boolean;
}

export interface ReadResult {
  file: NachaFile;
  /** Problems that stopped the reader from placing a record; empty for a well-formed file. */
  issues: NachaIssue[];
}

export interface RawRecord {
  line: number;
  text: string;
}

const ALL_NINES = /^9+$/;

/**
 * Split text into 94-character records with their line numbers, whatever the line ends.
 * Exported for tools that want the raw records.
 */
export function splitRecords(text: string): { records: RawRecord[]; concatenated: boolean } {
  const lines = text.split(/\r\n|\n|\r/);
  const records: RawRecord[] = [];
  const concatenated =
    lines.filter((l) => l.trim() !== '').length === 1 && lines.join('').trimEnd().length > RECORD_LENGTH;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i] ?? '';
    // Trailing blanks beyond 94 characters are padding some banks add (moov-io's long-line.ach);
    // a blank line carries no record.
    const trimmed = line.trimEnd();
    if (trimmed === '') continue;
    if (trimmed.length <= RECORD_LENGTH) {
      records.push({
        line: i + 1,
        text: line.length >= RECORD_LENGTH ? line.slice(0, RECORD_LENGTH) : line.padEnd(RECORD_LENGTH),
      });
      continue;
    }
    // Longer than a record once trailing blanks are gone: records written back to back without line
    // breaks. Cut every 94 characters; a right-trimmed last record is padded back.
    for (let at = 0; at < trimmed.length; at += RECORD_LENGTH) {
      records.push({
        line: concatenated ? records.length + 1 : i + 1,
        text: line.slice(at, at + RECORD_LENGTH).padEnd(RECORD_LENGTH),
      });
    }
  }
  return { records, concatenated };
}

/** Characters from..to (1-based, inclusive) of a record. */
function f(text: string, from: number, to: number): string {
  return text.slice(from - 1, to);
}

function num(text: string, from: number, to: number, name: string, malformed: string[]): number {
  const s = f(text, from, to);
  if (!/^\d+$/.test(s)) {
    malformed.push(name);
    return 0;
  }
  return Number(s);
}

function parseFileHeader(r: RawRecord): FileHeader {
  const t = r.text;
  return {
    line: r.line,
    raw: t,
    priorityCode: f(t, 2, 3),
    immediateDestination: f(t, 4, 13),
    immediateOrigin: f(t, 14, 23),
    fileCreationDate: f(t, 24, 29),
    fileCreationTime: f(t, 30, 33),
    fileIdModifier: f(t, 34, 34),
    recordSize: f(t, 35, 37),
    blockingFactor: f(t, 38, 39),
    formatCode: f(t, 40, 40),
    immediateDestinationName: f(t, 41, 63).trimEnd(),
    immediateOriginName: f(t, 64, 86).trimEnd(),
    referenceCode: f(t, 87, 94).trimEnd(),
  };
}

function parseBatchHeader(r: RawRecord): BatchHeader {
  const t = r.text;
  return {
    line: r.line,
    raw: t,
    serviceClassCode: f(t, 2, 4),
    companyName: f(t, 5, 20).trimEnd(),
    companyDiscretionaryData: f(t, 21, 40).trimEnd(),
    companyIdentification: f(t, 41, 50),
    standardEntryClassCode: f(t, 51, 53),
    companyEntryDescription: f(t, 54, 63).trimEnd(),
    companyDescriptiveDate: f(t, 64, 69),
    effectiveEntryDate: f(t, 70, 75),
    settlementDate: f(t, 76, 78),
    originatorStatusCode: f(t, 79, 79),
    odfiIdentification: f(t, 80, 87),
    batchNumber: f(t, 88, 94),
  };
}

function parseBatchControl(r: RawRecord): BatchControl {
  const t = r.text;
  const malformed: string[] = [];
  const serviceClassCode = f(t, 2, 4);
  // ADV batches carry 20-digit totals and no company identification (positions 21-60).
  const adv = serviceClassCode === '280';
  return {
    line: r.line,
    raw: t,
    serviceClassCode,
    entryAddendaCount: num(t, 5, 10, 'entry/addenda count', malformed),
    entryHash: f(t, 11, 20),
    totalDebitMinor: adv
      ? num(t, 21, 40, 'total debit amount', malformed)
      : num(t, 21, 32, 'total debit amount', malformed),
    totalCreditMinor: adv
      ? num(t, 41, 60, 'total credit amount', malformed)
      : num(t, 33, 44, 'total credit amount', malformed),
    companyIdentification: adv ? '' : f(t, 45, 54),
    messageAuthenticationCode: adv ? '' : f(t, 55, 73),
    odfiIdentification: f(t, 80, 87),
    batchNumber: f(t, 88, 94),
    malformed,
  };
}

function parseFileControl(r: RawRecord, adv: boolean): FileControl {
  const t = r.text;
  const malformed: string[] = [];
  return {
    line: r.line,
    raw: t,
    batchCount: num(t, 2, 7, 'batch count', malformed),
    blockCount: num(t, 8, 13, 'block count', malformed),
    entryAddendaCount: num(t, 14, 21, 'entry/addenda count', malformed),
    entryHash: f(t, 22, 31),
    // A file of ADV batches carries 20-digit totals like its batch controls.
    totalDebitMinor: adv
      ? num(t, 32, 51, 'total debit amount', malformed)
      : num(t, 32, 43, 'total debit amount', malformed),
    totalCreditMinor: adv
      ? num(t, 52, 71, 'total credit amount', malformed)
      : num(t, 44, 55, 'total credit amount', malformed),
    malformed,
  };
}

function parseEntry(r: RawRecord, header: BatchHeader): EntryDetail {
  const t = r.text;
  const malformed: string[] = [];
  // ADV entries have their own layout with a 12-digit amount (Appendix Three, ADV); IAT entries move
  // the account to positions 40-74 and carry no name (it is in addenda 10). One object literal per
  // entry, not a spread of a shared base: spreading made reading ten times slower.
  const adv = header.serviceClassCode === '280';
  const iat = !adv && header.standardEntryClassCode === 'IAT';
  return {
    line: r.line,
    raw: t,
    transactionCode: f(t, 2, 3),
    rdfiIdentification: f(t, 4, 11),
    checkDigit: f(t, 12, 12),
    accountNumber: (adv ? f(t, 13, 27) : iat ? f(t, 40, 74) : f(t, 13, 29)).trim(),
    amountMinor: adv ? num(t, 28, 39, 'amount', malformed) : num(t, 30, 39, 'amount', malformed),
    identificationNumber: iat ? '' : f(t, 40, 54).trim(),
    name: iat ? '' : f(t, 55, 76).trim(),
    discretionaryData: f(t, 77, 78),
    addendaIndicator: f(t, 79, 79),
    traceNumber: f(t, 80, 94),
    addenda: [],
    malformed,
  };
}

function parseAddenda(r: RawRecord): Addenda {
  const t = r.text;
  return {
    line: r.line,
    raw: t,
    typeCode: f(t, 2, 3),
    paymentRelatedInformation: f(t, 4, 83).trimEnd(),
    sequenceNumber: f(t, 84, 87),
    entryDetailSequenceNumber: f(t, 88, 94),
    reasonCode: f(t, 4, 6),
    originalTraceNumber: f(t, 7, 21),
    originalRdfi: f(t, 28, 35),
    traceNumber: f(t, 80, 94),
  };
}

/**
 * Read a NACHA file. `input` is the file's bytes (read as Latin-1 so that every byte stays one
 * character and a stray non-ASCII byte is reported at its place instead of shifting the fields) or
 * text already decoded.
 */
export function readNacha(input: string | Uint8Array, fileName = '<input>'): ReadResult {
  let text = typeof input === 'string' ? input : Buffer.from(input).toString('latin1');
  // A byte-order mark (UTF-8 as Latin-1, or a decoded U+FEFF) and a DOS end-of-file Ctrl-Z are
  // artefacts of the tools that moved the file, not records.
  text = text.replace(/^(\u00ef\u00bb\u00bf|\ufeff)/, '');
  // (Trimming the end is harmless: a right-trimmed last record is padded back like any short line.)
  while (text.trimEnd().endsWith('\u001a')) text = text.trimEnd().slice(0, -1);
  const { records, concatenated } = splitRecords(text);
  const issues: NachaIssue[] = [];
  const file: NachaFile = {
    fileName,
    header: null,
    batches: [],
    control: null,
    recordCount: records.length,
    paddingLines: 0,
    lastLine: records.at(-1)?.line ?? 1,
    concatenated,
  };
  let batch: Batch | null = null;
  let entry: EntryDetail | null = null;
  let adv = false;

  for (const r of records) {
    const type = r.text[0];
    if (file.control) {
      // After the file control only padding may follow.
      if (ALL_NINES.test(r.text)) file.paddingLines++;
      else
        issues.push({
          line: r.line,
          reason: 'record after the file control record (only lines of 9s may follow it)',
        });
      continue;
    }
    switch (type) {
      case '1':
        if (file.header)
          issues.push({ line: r.line, reason: 'second file header record (1); one file per input' });
        else if (file.batches.length > 0)
          issues.push({ line: r.line, reason: 'file header record (1) after the first batch' });
        else file.header = parseFileHeader(r);
        break;
      case '5': {
        if (!file.header)
          issues.push({ line: r.line, reason: 'batch header record (5) before the file header record (1)' });
        if (batch && !batch.control) {
          issues.push({
            line: r.line,
            reason: `batch header record (5) before the batch control record (8) of the batch at line ${batch.header.line}`,
          });
        }
        const header = parseBatchHeader(r);
        if (header.serviceClassCode === '280') adv = true;
        batch = { header, entries: [], control: null };
        file.batches.push(batch);
        entry = null;
        break;
      }
      case '6':
        if (!batch || batch.control) {
          issues.push({
            line: r.line,
            reason: 'entry detail record (6) outside a batch (no batch header record (5) before it)',
          });
          break;
        }
        entry = parseEntry(r, batch.header);
        batch.entries.push(entry);
        break;
      case '7':
        if (!entry || !batch || batch.control) {
          issues.push({
            line: r.line,
            reason: 'addenda record (7) without an entry detail record (6) before it',
          });
          break;
        }
        entry.addenda.push(parseAddenda(r));
        break;
      case '8':
        if (!batch || batch.control) {
          issues.push({
            line: r.line,
            reason: 'batch control record (8) without a batch header record (5) before it',
          });
          break;
        }
        batch.control = parseBatchControl(r);
        entry = null;
        break;
      case '9':
        // A line of 9s before any file control is padding in the wrong place; a real file control has
        // counts in it, which are never all nines in a file small enough to exist.
        if (ALL_NINES.test(r.text)) {
          issues.push({ line: r.line, reason: 'padding line of 9s before the file control record (9)' });
          file.paddingLines++;
          break;
        }
        if (batch && !batch.control) {
          issues.push({
            line: r.line,
            reason: `file control record (9) before the batch control record (8) of the batch at line ${batch.header.line}`,
          });
        }
        file.control = parseFileControl(r, adv);
        break;
      default:
        issues.push({
          line: r.line,
          reason: `unknown record type ${JSON.stringify(type)} (expected 1, 5, 6, 7, 8 or 9)`,
        });
    }
  }

  if (!file.header) issues.unshift({ line: records[0]?.line ?? 1, reason: 'missing file header record (1)' });
  if (
    batch &&
    !batch.control &&
    !issues.some((i) => i.reason.includes('batch control record (8) of the batch'))
  ) {
    issues.push({
      line: file.lastLine,
      reason: `missing batch control record (8) for the batch at line ${batch.header.line}`,
    });
  }
  if (!file.control) issues.push({ line: file.lastLine, reason: 'missing file control record (9)' });
  return { file, issues };
}
