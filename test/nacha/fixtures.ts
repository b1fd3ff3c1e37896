import type { NachaFile } from '../../src/gateways/nacha/reader.js';
import type { NachaSettings, WriteEntry } from '../../src/gateways/nacha/writer.js';

export const settings: NachaSettings = {
  immediateDestination: '231380104',
  immediateDestinationName: 'Citadel',
  immediateOrigin: '121042882',
  immediateOriginName: 'Wells Fargo',
  odfiRouting: '121042882',
  balanced: false,
};

export const balancedSettings: NachaSettings = {
  ...settings,
  balanced: true,
  offsetAccount: { accountNumber: '9876543210', accountType: 'checking', name: 'ACME OPERATING' },
};

export const acme = { name: 'ACME Corp', identification: '1234567890', entryDescription: 'VENDOR PAY' };

export function entry(overrides: Partial<WriteEntry> = {}): WriteEntry {
  return {
    reference: 'pay_1',
    secCode: 'CCD',
    direction: 'credit',
    company: acme,
    effectiveDate: '2026-11-27',
    routingNumber: '231380104',
    accountNumber: '744-5678-99',
    accountType: 'checking',
    amountMinor: 50000,
    name: 'Best Vendor LLC',
    identificationNumber: 'INV-2025-001',
    ...overrides,
  };
}

/** What a written entry reads back as, keyed by trace number (offset entries included). */
export function readBack(file: NachaFile) {
  return new Map(
    file.batches.flatMap((b) =>
      b.entries.map((e) => [
        e.traceNumber,
        {
          sec: b.header.standardEntryClassCode,
          company: b.header.companyName,
          effective: b.header.effectiveEntryDate,
          code: e.transactionCode,
          routing: e.rdfiIdentification + e.checkDigit,
          account: e.accountNumber,
          amount: e.amountMinor,
          name: e.name,
          id: e.identificationNumber,
          addenda: e.addenda.map((a) => a.paymentRelatedInformation),
        },
      ]),
    ),
  );
}

export function expected(e: WriteEntry) {
  const code = { checking: { credit: '22', debit: '27' }, savings: { credit: '32', debit: '37' } }[
    e.accountType
  ][e.direction];
  return {
    sec: e.secCode,
    company: e.company.name.slice(0, 16).trimEnd(),
    effective: e.effectiveDate.slice(2).replaceAll('-', ''),
    code,
    routing: e.routingNumber,
    account: e.accountNumber,
    amount: e.amountMinor,
    name: e.name.slice(0, 22).trim(),
    id: (e.identificationNumber ?? '').slice(0, 15).trim(),
    addenda: e.addenda ? [e.addenda.trimEnd()] : [],
  };
}
