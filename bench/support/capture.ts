/**
 * Records every statement a pool's clients run (text and parameters, in order), by wrapping `query` on
 * each client the pool hands out. Used once per run to capture the SQL of one engine payment, which the
 * bare-SQL baseline then replays.
 */
import type pg from 'pg';

export interface Captured {
  text: string;
  values: unknown[];
  /** The `id` the statement returned (INSERT ... RETURNING id), so a replay can map it to its own. */
  returnedId?: string;
}

export interface Capture {
  statements: Captured[];
  start(): void;
  stop(): Captured[];
}

export function capturePool(pool: pg.Pool): Capture {
  let recording = false;
  const statements: Captured[] = [];
  const wrapped = new WeakSet<pg.PoolClient>();
  pool.on('acquire', (client: pg.PoolClient) => {
    if (wrapped.has(client)) return;
    wrapped.add(client);
    const original = client.query.bind(client) as (...args: unknown[]) => unknown;
    (client as unknown as { query: (...args: unknown[]) => unknown }).query = (...args: unknown[]) => {
      if (recording) {
        const [first, second] = args;
        const text = typeof first === 'string' ? first : (first as { text: string }).text;
        const values =
          typeof first === 'string'
            ? ((second as unknown[] | undefined) ?? [])
            : ((first as { values?: unknown[] }).values ?? []);
        const entry: Captured = { text, values };
        statements.push(entry);
        const noteId = (r: { rows?: { id?: unknown }[] } | undefined) => {
          const id = r?.rows?.[0]?.id;
          if (typeof id === 'string' && /^INSERT/i.test(text.trim())) entry.returnedId = id;
        };
        // pool.query (a statement in autocommit) calls its client with a callback, and releases the
        // client from it: that form returns nothing to chain on, so the callback is wrapped instead.
        const last = args[args.length - 1];
        if (typeof last === 'function') {
          const callback = last as (error: Error | null, r?: { rows?: { id?: unknown }[] }) => void;
          return original(...args.slice(0, -1), (error: Error | null, r?: { rows?: { id?: unknown }[] }) => {
            if (!error) noteId(r);
            callback(error, r);
          });
        }
        const result = original(...args) as Promise<{ rows?: { id?: unknown }[] }>;
        return result.then((r) => {
          noteId(r);
          return r;
        });
      }
      return original(...args);
    };
  });
  return {
    statements,
    start() {
      statements.length = 0;
      recording = true;
    },
    stop() {
      recording = false;
      return [...statements];
    },
  };
}
