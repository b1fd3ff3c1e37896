/**
 * Credentials the local PayPal emulator accepts when none are configured. They open nothing real;
 * kept apart from client.ts so the emulator can name them without loading the PayPal SDK.
 */
export const EMULATOR_CLIENT_ID = 'paygate-sandbox-client-id';
export const EMULATOR_CLIENT_SECRET = 'paygate-sandbox-client-secret';
