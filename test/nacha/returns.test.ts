import { describe, expect, it } from 'vitest';
import { readNacha } from '../../src/gateways/nacha/reader.js';
import { extractReturns, mapReturnCode } from '../../src/gateways/nacha/returns.js';
import { readRef } from './support.js';

describe('returns (addenda 99)', () => {
  it('maps return-WEB.ach to R01 insufficient funds and R03 payment method invalid', () => {
    const { returns, corrections } = extractReturns(readNacha(readRef('test/testdata/return-WEB.ach')).file);
    expect(corrections).toEqual([]);
    expect(returns).toEqual([
      expect.objectContaining({
        line: 4,
        returnCode: 'R01',
        originalTraceNumber: '091400600000001',
        traceNumber: '091000017611242',
        originalRdfi: '09100001',
        amountMinor: 12354,
        transactionCode: '26',
        direction: 'debit',
        kind: 'return',
        action: 'reschedule',
        failure: {
          code: 'insufficient_funds',
          providerCode: 'R01',
          message: 'ACH return R01: Insufficient funds',
        },
      }),
      expect.objectContaining({
        line: 8,
        returnCode: 'R03',
        originalTraceNumber: '091400600000003',
        amountMinor: 4565,
        direction: 'credit',
        action: 'request_new_payment_method',
        failure: {
          code: 'payment_method_invalid',
          providerCode: 'R03',
          message: 'ACH return R03: No account / unable to locate account',
        },
      }),
    ]);
  });

  it('marks contested and dishonored returns for manual review', () => {
    const { returns } = extractReturns(readNacha(readRef('examples/testdata/contested-return.ach')).file);
    expect(returns.map((r) => [r.returnCode, r.kind, r.failure.code, r.action])).toEqual([
      ['R07', 'return', 'declined', 'manual_review'],
      ['R68', 'dishonored', 'declined', 'manual_review'],
      ['R71', 'contested', 'declined', 'manual_review'],
    ]);
    expect(returns[0]?.addendaInformation).toBe('Authorization Revoked');
  });

  it('follows the seed rules for every code family', () => {
    expect(mapReturnCode('R09').code).toBe('insufficient_funds');
    for (const c of ['R02', 'R03', 'R04'])
      expect(mapReturnCode(c)).toMatchObject({ code: 'payment_method_invalid', providerCode: c });
    for (const c of ['R05', 'R10', 'R16', 'R29'])
      expect(mapReturnCode(c)).toMatchObject({ code: 'declined', action: 'manual_review' });
    expect(mapReturnCode('R99')).toMatchObject({
      code: 'declined',
      providerCode: 'R99',
      message: 'ACH return R99: Unknown return reason code',
    });
  });
});

describe('notifications of change (addenda 98)', () => {
  it('proposes the corrected account number from cor-example.ach', () => {
    const { returns, corrections } = extractReturns(readNacha(readRef('test/testdata/cor-example.ach')).file);
    expect(returns).toEqual([]);
    expect(corrections).toEqual([
      {
        line: 4,
        changeCode: 'C01',
        field: 'account_number',
        correctedValue: '1918171614',
        corrected: { accountNumber: '1918171614' },
        originalTrace: '121042880000001',
        originalRdfi: '12104288',
      },
    ]);
  });

  it('splits corrected data by change code layout', () => {
    // One COR record per layout, built from cor-example.ach's record with different corrected data.
    const base = readRef('test/testdata/cor-example.ach').toString('latin1').split('\n');
    const withData = (code: string, data: string) =>
      base
        .map((l) => (l.startsWith('798') ? `798${code}${l.slice(6, 35)}${data.padEnd(29)}${l.slice(64)}` : l))
        .join('\n');
    const one = (code: string, data: string) =>
      extractReturns(readNacha(withData(code, data)).file).corrections[0];
    expect(one('C02', '231380104')).toMatchObject({
      field: 'routing_number',
      corrected: { routingNumber: '231380104' },
    });
    expect(one('C03', '231380104   12345678')).toMatchObject({
      field: 'routing_and_account_number',
      corrected: { routingNumber: '231380104', accountNumber: '12345678' },
    });
    expect(one('C05', '32')).toMatchObject({
      field: 'transaction_code',
      corrected: { transactionCode: '32', accountType: 'savings' },
    });
    expect(one('C06', '12345678            32')).toMatchObject({
      corrected: { accountNumber: '12345678', transactionCode: '32', accountType: 'savings' },
    });
    expect(one('C07', '23138010412345678         22')).toMatchObject({
      corrected: {
        routingNumber: '231380104',
        accountNumber: '12345678',
        transactionCode: '22',
        accountType: 'checking',
      },
    });
    expect(one('C04', 'JANE Q DOE')).toMatchObject({
      field: 'individual_name',
      corrected: { name: 'JANE Q DOE' },
    });
    expect(one('C61', '')).toMatchObject({ field: 'unsupported', corrected: {} });
  });
});
