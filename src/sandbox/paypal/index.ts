export { createSandboxSigningIdentity, type SandboxSigningIdentity } from './certificate.js';
export {
  type PaypalEmulator,
  type PaypalEmulatorOptions,
  type PaypalRequestRecord,
  type PaypalWebhookDelivery,
  startPaypalEmulator,
} from './emulator.js';
export { SANDBOX_VAULT_TOKENS, type VaultBehaviour, vaultBehaviour } from './vault.js';
