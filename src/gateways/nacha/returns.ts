/**
 * Returns (addenda 99) and notifications of change (addenda 98) from a bank's return file, reduced to
 * what the payment engine acts on: a failure in our error taxonomy per returned entry, and a proposed
 * correction per NOC. Nothing here changes bank details: a correction is only a proposal that a human
 * approves before it is applied.
 *
 * The seed's rules: R01 (and R09, uncollected funds: the same remedy) -> insufficient_funds, alert and
 * reschedule; R02, R03, R04 -> payment_method_invalid, ask for updated bank details; every other code
 * -> declined, manual review. The R-code is always kept as providerCode.
 *
 * Pure code: no I/O.
 */

import type { GatewayErrorCode, GatewayFailure } from '../types.js';
import type { Addenda, EntryDetail, NachaFile } from './reader.js';
import { transactionDirection } from './validator.js';

/** NACHA return reason codes and their official short descriptions. */
const RETURN_REASONS: Readonly<Record<string, string>> = {
  R01: 'Insufficient funds',
  R02: 'Account closed',
  R03: 'No account / unable to locate account',
  R04: 'Invalid account number structure',
  R05: 'Unauthorized debit to consumer account using corporate SEC code',
  R06: 'Returned per ODFI request',
  R07: 'Authorization revoked by customer',
  R08: 'Payment stopped',
  R09: 'Uncollected funds',
  R10: 'Customer advises originator is not known to receiver and/or not authorized',
  R11: 'Customer advises entry not in accordance with the terms of the authorization',
  R12: 'Account sold to another DFI',
  R13: 'Invalid ACH routing number',
  R14: 'Representative payee deceased or unable to continue in that capacity',
  R15: 'Beneficiary or account holder deceased',
  R16: 'Account frozen / entry returned per OFAC instruction',
  R17: 'File record edit criteria / entry with invalid account number initiated under questionable circumstances',
  R18: 'Improper effective entry date',
  R19: 'Amount field error',
  R20: 'Non-transaction account',
  R21: 'Invalid company identification',
  R22: 'Invalid individual ID number',
  R23: 'Credit entry refused by receiver',
  R24: 'Duplicate entry',
  R25: 'Addenda error',
  R26: 'Mandatory field error',
  R27: 'Trace number error',
  R28: 'Routing number check digit error',
  R29: 'Corporate customer advises not authorized',
  R30: 'RDFI not participant in check truncation program',
  R31: 'Permissible return entry (CCD and CTX only)',
  R32: 'RDFI non-settlement',
  R33: 'Return of XCK entry',
  R34: 'Limited participation DFI',
  R35: 'Return of improper debit entry',
  R36: 'Return of improper credit entry',
  R37: 'Source document presented for payment',
  R38: 'Stop payment on source document',
  R39: 'Improper source document / source document presented for payment',
  R40: 'Return of ENR entry by federal government agency',
  R41: 'Invalid transaction code (ENR)',
  R42: 'Routing number / check digit error (ENR)',
  R43: 'Invalid DFI account number (ENR)',
  R44: 'Invalid individual ID number / identification number (ENR)',
  R45: 'Invalid individual name / company name (ENR)',
  R46: 'Invalid representative payee indicator (ENR)',
  R47: 'Duplicate enrollment (ENR)',
  R50: 'State law affecting RCK acceptance',
  R51: 'Item related to RCK entry is ineligible or RCK entry is improper',
  R52: 'Stop payment on item related to RCK entry',
  R53: 'Item and RCK entry presented for payment',
  R61: 'Misrouted return',
  R62: 'Return of erroneous or reversing debit',
  R67: 'Duplicate return',
  R68: 'Untimely return',
  R69: 'Field error(s)',
  R70: 'Permissible return entry not accepted / return not requested by ODFI',
  R71: 'Misrouted dishonored return',
  R72: 'Untimely dishonored return',
  R73: 'Timely original return',
  R74: 'Corrected return',
  R75: 'Return not a duplicate',
  R76: 'No errors found',
  R77: 'Non-acceptance of R62 dishonored return',
  R80: 'IAT entry coding error',
  R81: 'Non-participant in IAT program',
  R82: 'Invalid foreign receiving DFI identification',
  R83: 'Foreign receiving DFI unable to settle',
  R84: 'Entry not processed by gateway',
  R85: 'Incorrectly coded outbound international payment',
};

/** What the engine should do with a returned payment, per the seed's rules. */
export type ReturnAction = 'reschedule' | 'request_new_payment_method' | 'manual_review';

/** Our taxonomy for an R-code; an unknown code is a decline for a human to look at. */
export function mapReturnCode(rCode: string): GatewayFailure & { action: ReturnAction } {
  const description = RETURN_REASONS[rCode] ?? 'Unknown return reason code';
  const message = `ACH return ${rCode}: ${description}`;
  const code = returnErrorCode(rCode);
  return { code, providerCode: rCode, message, action: actionFor(code) };
}

function returnErrorCode(rCode: string): GatewayErrorCode {
  switch (rCode) {
    case 'R01':
    case 'R09':
      return 'insufficient_funds';
    case 'R02':
    case 'R03':
    case 'R04':
      return 'payment_method_invalid';
    default:
      return 'declined';
  }
}

function actionFor(code: GatewayErrorCode): ReturnAction {
  switch (code) {
    case 'insufficient_funds':
      return 'reschedule';
    case 'payment_method_invalid':
      return 'request_new_payment_method';
    case 'declined':
    case 'rate_limited':
    case 'api_error':
    case 'network_timeout':
    case 'configuration_error':
      return 'manual_review';
    default: {
      const unreachable: never = code;
      return unreachable;
    }
  }
}

export interface AchReturn {
  line: number;
  /** R01..R85 as written. */
  returnCode: string;
  /** The trace number of our original entry: the key to the payment we wrote it for. */
  originalTraceNumber: string;
  /** The return entry's own trace number (assigned by the RDFI). */
  traceNumber: string;
  /** The original receiving bank (8 digits). */
  originalRdfi: string;
  amountMinor: number;
  /** Direction of the return entry itself (a returned debit comes back as a credit). */
  direction: 'credit' | 'debit' | null;
  transactionCode: string;
  /** YYMMDD, for R14/R15; empty otherwise. */
  dateOfDeath: string;
  addendaInformation: string;
  /** Dishonored (R61-R69) and contested (R70-R77) returns concern a return we sent, not a payment. */
  kind: 'return' | 'dishonored' | 'contested';
  failure: GatewayFailure;
  action: ReturnAction;
}

/** What a NOC tells us to change. */
export type CorrectionField =
  | 'account_number'
  | 'routing_number'
  | 'routing_and_account_number'
  | 'individual_name'
  | 'transaction_code'
  | 'account_number_and_transaction_code'
  | 'routing_account_and_transaction_code'
  | 'receiving_dfi_identification'
  | 'individual_identification_number'
  | 'addenda_format'
  | 'sec_code'
  | 'unsupported';

export interface CorrectedValues {
  routingNumber?: string;
  accountNumber?: string;
  /** From a corrected transaction code: 2x checking, 3x savings. */
  accountType?: 'checking' | 'savings';
  transactionCode?: string;
  name?: string;
  identificationNumber?: string;
}

export interface NocCorrection {
  line: number;
  /** C01..C14 as written (C61..C69 are refused NOCs). */
  changeCode: string;
  field: CorrectionField;
  /** The corrected data exactly as the bank wrote it (positions 36-64, trimmed). */
  correctedValue: string;
  /** The same, split into the bank detail fields it corrects. */
  corrected: CorrectedValues;
  originalTrace: string;
  originalRdfi: string;
}

function correctionField(changeCode: string): CorrectionField {
  switch (changeCode) {
    case 'C01':
      return 'account_number';
    case 'C02':
      return 'routing_number';
    case 'C03':
      return 'routing_and_account_number';
    case 'C04':
      return 'individual_name';
    case 'C05':
      return 'transaction_code';
    case 'C06':
      return 'account_number_and_transaction_code';
    case 'C07':
      return 'routing_account_and_transaction_code';
    case 'C08':
      return 'receiving_dfi_identification';
    case 'C09':
      return 'individual_identification_number';
    case 'C13':
      return 'addenda_format';
    case 'C14':
      return 'sec_code';
    default:
      return 'unsupported';
  }
}

function accountTypeOf(transactionCode: string): 'checking' | 'savings' | undefined {
  if (transactionCode.startsWith('2')) return 'checking';
  if (transactionCode.startsWith('3')) return 'savings';
  return undefined;
}

/** Split the 29 characters of corrected data by the layout each change code uses (NACHA Appendix Five). */
function correctedValues(field: CorrectionField, data: string): CorrectedValues {
  const t = (from: number, to: number) => data.slice(from - 1, to).trim();
  const withCode = (transactionCode: string): CorrectedValues => {
    const accountType = accountTypeOf(transactionCode);
    return accountType ? { transactionCode, accountType } : { transactionCode };
  };
  switch (field) {
    case 'account_number':
      return { accountNumber: t(1, 17) };
    case 'routing_number':
      return { routingNumber: t(1, 9) };
    case 'routing_and_account_number':
      return { routingNumber: t(1, 9), accountNumber: t(13, 29) };
    case 'individual_name':
      return { name: t(1, 22) };
    case 'transaction_code':
      return withCode(t(1, 2));
    case 'account_number_and_transaction_code':
      return { accountNumber: t(1, 17), ...withCode(t(21, 22)) };
    case 'routing_account_and_transaction_code':
      return { routingNumber: t(1, 9), accountNumber: t(10, 26), ...withCode(t(27, 28)) };
    case 'individual_identification_number':
      return { identificationNumber: t(1, 22) };
    case 'receiving_dfi_identification':
    case 'addenda_format':
    case 'sec_code':
    case 'unsupported':
      return {};
    default: {
      const unreachable: never = field;
      return unreachable;
    }
  }
}

function toReturn(entry: EntryDetail, a: Addenda): AchReturn {
  const mapped = mapReturnCode(a.reasonCode);
  const n = Number(a.reasonCode.slice(1));
  const kind = n >= 61 && n <= 69 ? 'dishonored' : n >= 70 && n <= 77 ? 'contested' : 'return';
  const { action, ...failure } = mapped;
  return {
    line: a.line,
    returnCode: a.reasonCode,
    originalTraceNumber: a.originalTraceNumber,
    traceNumber: entry.traceNumber,
    originalRdfi: a.originalRdfi,
    amountMinor: entry.amountMinor,
    direction: transactionDirection(entry.transactionCode),
    transactionCode: entry.transactionCode,
    dateOfDeath: a.raw.slice(21, 27).trim(),
    addendaInformation: a.raw.slice(35, 79).trim(),
    kind,
    failure,
    action,
  };
}

function toCorrection(a: Addenda): NocCorrection {
  const field = correctionField(a.reasonCode);
  const data = a.raw.slice(35, 64);
  return {
    line: a.line,
    changeCode: a.reasonCode,
    field,
    correctedValue: data.trim(),
    corrected: correctedValues(field, data),
    originalTrace: a.originalTraceNumber,
    originalRdfi: a.originalRdfi,
  };
}

/** Every return and NOC in a file (a return file from the bank), in file order. */
export function extractReturns(file: NachaFile): { returns: AchReturn[]; corrections: NocCorrection[] } {
  const returns: AchReturn[] = [];
  const corrections: NocCorrection[] = [];
  for (const batch of file.batches) {
    for (const entry of batch.entries) {
      for (const a of entry.addenda) {
        if (a.typeCode === '99') returns.push(toReturn(entry, a));
        else if (a.typeCode === '98') corrections.push(toCorrection(a));
      }
    }
  }
  return { returns, corrections };
}
