/**
 * The sandbox's vaulted PayPal payment tokens (what `paygate payment-method add --rail paypal --token`
 * stores). Each behaves as documented here and in docs/paypal.md; any other token is "not in
 * the vault" and refused as an unusable payment source.
 *
 * | token                          | at create | at capture                                                  | our result            |
 * |--------------------------------|-----------|-------------------------------------------------------------|-----------------------|
 * | pp_vault_success               | APPROVED  | 201, capture COMPLETED, money moves                         | succeeded             |
 * | pp_vault_pending               | APPROVED  | 201, capture PENDING (PENDING_REVIEW), money on its way      | processing            |
 * | pp_vault_declined              | APPROVED  | 422 INSTRUMENT_DECLINED, nothing moves                      | declined              |
 * | pp_vault_insufficient_funds    | APPROVED  | 201, capture DECLINED, processor response 5120, nothing moves | insufficient_funds  |
 * | pp_vault_payer_action_required | APPROVED  | 422 PAYER_ACTION_REQUIRED, nothing moves                    | payment_method_invalid|
 * | pp_vault_invalid (or unknown)  | 422 PAYMENT_SOURCE_INFO_CANNOT_BE_VERIFIED | -                          | payment_method_invalid|
 */
export type VaultBehaviour =
  | 'success'
  | 'pending'
  | 'declined'
  | 'insufficient_funds'
  | 'payer_action_required'
  | 'invalid';

export const SANDBOX_VAULT_TOKENS: Readonly<Record<string, VaultBehaviour>> = {
  pp_vault_success: 'success',
  pp_vault_pending: 'pending',
  pp_vault_declined: 'declined',
  pp_vault_insufficient_funds: 'insufficient_funds',
  pp_vault_payer_action_required: 'payer_action_required',
  pp_vault_invalid: 'invalid',
};

export function vaultBehaviour(token: string): VaultBehaviour {
  return Object.hasOwn(SANDBOX_VAULT_TOKENS, token) ? SANDBOX_VAULT_TOKENS[token]! : 'invalid';
}
