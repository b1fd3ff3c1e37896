/**
 * Validators for Stripe's OpenAPI 3 schemas (../shared/reference/stripe/spec3.trimmed.json) with ajv.
 *
 * OpenAPI 3.0 is not JSON Schema: `nullable: true` becomes `anyOf: [{type: 'null'}, ...]`, Stripe's
 * formats (unix-time, decimal) are accepted as annotations, and its x- keywords are ignored. One
 * tightening on purpose: objects that list their properties get `additionalProperties: false`, so an
 * emulator field Stripe never sends fails the contract instead of passing silently.
 */
import { Ajv, type ValidateFunction } from 'ajv';
import { readReferenceJson } from './reference.js';

interface Spec {
  paths: Record<
    string,
    Record<string, { responses: Record<string, { content?: Record<string, { schema: unknown }> }> }>
  >;
  components: { schemas: Record<string, unknown> };
}

export const stripeSpec = readReferenceJson<Spec>('stripe/spec3.trimmed.json');

function transform(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(transform);
  if (!node || typeof node !== 'object') return node;
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(node as Record<string, unknown>)) {
    if (key.startsWith('x-') || key === 'nullable') continue;
    out[key] = transform(value);
  }
  if (out['type'] === 'object' && out['properties'] && out['additionalProperties'] === undefined) {
    out['additionalProperties'] = false;
  }
  if ((node as Record<string, unknown>)['nullable'] === true) return { anyOf: [{ type: 'null' }, out] };
  return out;
}

const ajv = new Ajv({ strict: false, allErrors: true });
ajv.addFormat('unix-time', true);
ajv.addFormat('decimal', true);
ajv.addSchema({ $id: 'stripe', components: transform(stripeSpec.components) });

const cache = new Map<string, ValidateFunction>();

/** A validator for one component schema, e.g. 'payment_intent', 'refund', 'error'. */
export function componentValidator(name: string): ValidateFunction {
  const ref = `stripe#/components/schemas/${name}`;
  let validate = cache.get(ref);
  if (!validate) {
    validate = ajv.compile({ $ref: ref });
    cache.set(ref, validate);
  }
  return validate;
}

/** The validator for an operation's documented response (status '200' or 'default' for errors). */
export function responseValidator(
  pathName: string,
  method: string,
  status: '200' | 'default',
): ValidateFunction {
  const key = `${method} ${pathName} ${status}`;
  let validate = cache.get(key);
  if (!validate) {
    const schema =
      stripeSpec.paths[pathName]?.[method]?.responses[status]?.content?.['application/json']?.schema;
    if (!schema) throw new Error(`the spec documents no ${status} response for ${method} ${pathName}`);
    // The operation's schema refers to '#/components/...' of the spec: point those at the added spec.
    const rebased = JSON.parse(
      JSON.stringify(transform(schema)).replaceAll('"$ref":"#/', '"$ref":"stripe#/'),
    );
    validate = ajv.compile(rebased as object);
    cache.set(key, validate);
  }
  return validate;
}

export function explain(validate: ValidateFunction): string {
  return (validate.errors ?? [])
    .map((e) => `${e.instancePath || '/'} ${e.message}${e.params ? ` ${JSON.stringify(e.params)}` : ''}`)
    .join('\n');
}
