/**
 * The sandbox's own webhook-signing identity: a fresh RSA key and a self-signed certificate per
 * emulator, made when it first signs an event or serves its certificate (finding an RSA key's primes
 * takes up to a second or more of CPU, which a process that never sends a PayPal event should not pay),
 * served from the emulator's loopback URL. Nothing here is trusted outside sandbox
 * mode: the verifier accepts this certificate only from the configured loopback origin.
 *
 * node:crypto makes keys but not certificates, so the certificate is built with node-forge (pure JS,
 * no native build, no global polyfills).
 */
import { createPrivateKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import forge from 'node-forge';

export interface SandboxSigningIdentity {
  privateKey: KeyObject;
  certificatePem: string;
}

/**
 * Valid from a day before `now` (clock skew between test processes) for `validDays` after it.
 * `now` is injectable so a test can also mint an already expired certificate.
 */
export function createSandboxSigningIdentity(
  options: { now?: Date; validDays?: number; commonName?: string } = {},
): SandboxSigningIdentity {
  const now = options.now ?? new Date();
  const day = 24 * 60 * 60 * 1000;
  // node:crypto generates the key (fast, native); forge only assembles and signs the certificate.
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const privatePem = privateKey.export({ type: 'pkcs1', format: 'pem' }).toString();
  const forgeKey = forge.pki.privateKeyFromPem(privatePem);
  const cert = forge.pki.createCertificate();
  cert.publicKey = forge.pki.setRsaPublicKey(forgeKey.n, forgeKey.e);
  cert.serialNumber = `01${forge.util.bytesToHex(forge.random.getBytesSync(8))}`;
  cert.validity.notBefore = new Date(now.getTime() - day);
  cert.validity.notAfter = new Date(now.getTime() + (options.validDays ?? 365) * day);
  const name = [{ name: 'commonName', value: options.commonName ?? 'paygate-sandbox.paypal.invalid' }];
  cert.setSubject(name);
  cert.setIssuer(name);
  cert.setExtensions([{ name: 'keyUsage', digitalSignature: true, critical: true }]);
  cert.sign(forgeKey, forge.md.sha256.create());
  return {
    privateKey: createPrivateKey(privatePem),
    certificatePem: forge.pki.certificateToPem(cert),
  };
}
