/**
 * A local stand-in for Anthropic's Messages API on 127.0.0.1: a real HTTP server answering
 * POST /v1/messages with the API's JSON, so the real SDK talks to it through `baseURL`. It records every
 * request (raw body included) and answers as the test says: a tool call, prose, an error status, a slow
 * answer, or one held until the test releases it.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface RecordedRequest {
  method: string;
  path: string;
  headers: http.IncomingHttpHeaders;
  /** The body exactly as it arrived. */
  raw: string;
  json: Record<string, unknown>;
}

export interface FakeUsage {
  input_tokens: number;
  output_tokens: number;
}

export type FakeAnswer =
  | { kind: 'tool'; input: unknown; name?: string; usage?: FakeUsage; model?: string; stopReason?: string }
  | { kind: 'text'; text: string; usage?: FakeUsage }
  | { kind: 'error'; status: number; type: string; message: string }
  | { kind: 'slow'; delayMs: number; answer: FakeAnswer }
  | { kind: 'held'; answer: FakeAnswer };

export interface FakeMessagesApi {
  url: string;
  requests: RecordedRequest[];
  /** How to answer the n-th request (0-based); the default is a valid tool call. */
  answer: (n: number, request: RecordedRequest) => FakeAnswer;
  /** Resolves when the next request has arrived. */
  nextRequest(): Promise<RecordedRequest>;
  /** Answer every request held so far. */
  release(): void;
  close(): Promise<void>;
}

export const DEFAULT_TOOL_INPUT = {
  summary: 'The payment failed because the account lacked funds.',
  likely_cause: 'The balance was below the invoice amount at the time of the charge.',
  next_step: 'Ask the payer to fund the account; paygate will retry on the rescheduled date.',
  retry_could_help: true,
};

function messageBody(answer: Extract<FakeAnswer, { kind: 'tool' | 'text' }>, requestedModel: string) {
  const usage = {
    input_tokens: answer.usage?.input_tokens ?? 100,
    output_tokens: answer.usage?.output_tokens ?? 50,
    cache_creation_input_tokens: null,
    cache_read_input_tokens: null,
    service_tier: 'standard',
  };
  const base = { id: 'msg_fake_0001', type: 'message', role: 'assistant', stop_sequence: null, usage };
  if (answer.kind === 'text') {
    return {
      ...base,
      model: requestedModel,
      content: [{ type: 'text', text: answer.text }],
      stop_reason: 'end_turn',
    };
  }
  return {
    ...base,
    model: answer.model ?? requestedModel,
    content: [
      {
        type: 'tool_use',
        id: 'toolu_fake_0001',
        name: answer.name ?? 'record_failure_analysis',
        input: answer.input,
      },
    ],
    stop_reason: answer.stopReason ?? 'tool_use',
  };
}

export async function startFakeMessagesApi(): Promise<FakeMessagesApi> {
  const requests: RecordedRequest[] = [];
  const waiters: Array<(r: RecordedRequest) => void> = [];
  const held: Array<() => void> = [];
  const timers = new Set<NodeJS.Timeout>();

  const api: FakeMessagesApi = {
    url: '',
    requests,
    answer: () => ({ kind: 'tool', input: DEFAULT_TOOL_INPUT }),
    nextRequest: () => new Promise((resolve) => waiters.push(resolve)),
    release: () => {
      for (const go of held.splice(0)) go();
    },
    close: async () => {
      for (const t of timers) clearTimeout(t);
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };

  function send(res: http.ServerResponse, answer: FakeAnswer, model: string): void {
    if (res.destroyed) return;
    switch (answer.kind) {
      case 'slow': {
        const timer = setTimeout(() => {
          timers.delete(timer);
          send(res, answer.answer, model);
        }, answer.delayMs);
        timers.add(timer);
        res.on('close', () => clearTimeout(timer));
        return;
      }
      case 'held':
        held.push(() => send(res, answer.answer, model));
        return;
      case 'error':
        // retry-after-ms keeps the SDK's one retry quick; x-should-retry is left to the status.
        res.writeHead(answer.status, { 'content-type': 'application/json', 'retry-after-ms': '5' });
        res.end(JSON.stringify({ type: 'error', error: { type: answer.type, message: answer.message } }));
        return;
      case 'tool':
      case 'text':
        res.writeHead(200, { 'content-type': 'application/json', 'request-id': 'req_fake' });
        res.end(JSON.stringify(messageBody(answer, model)));
        return;
      default: {
        const unreachable: never = answer;
        throw new Error(`unknown answer ${JSON.stringify(unreachable)}`);
      }
    }
  }

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks).toString('utf8');
      if (req.method !== 'POST' || !req.url?.startsWith('/v1/messages')) {
        res.writeHead(404, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ type: 'error', error: { type: 'not_found_error', message: 'not found' } }));
        return;
      }
      const json = JSON.parse(raw) as Record<string, unknown>;
      const recorded: RecordedRequest = {
        method: req.method,
        path: req.url,
        headers: req.headers,
        raw,
        json,
      };
      const n = requests.length;
      requests.push(recorded);
      for (const w of waiters.splice(0)) w(recorded);
      send(res, api.answer(n, recorded), String(json.model));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  api.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return api;
}
