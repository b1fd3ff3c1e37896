/**
 * A `fetch` for the bench's MCP clients on `node:http` with kept-alive connections. The clients stand in
 * for agents on other machines, so they should take as little of this machine's 2 cores from the server
 * as they can: Node's built-in `fetch` (undici) costs several times `http.request` per call (the webhook
 * bench measured 350 to 380 µs against 65 to 97 µs). The MCP SDK's own transport still does everything
 * else (its headers, the session, SSE parsing of the answers): only the HTTP client underneath changes.
 */
import http from 'node:http';
import { Readable } from 'node:stream';

/** Statuses whose response has no body (a Response refuses one). */
const NO_BODY = new Set([101, 204, 205, 304]);

export function nodeHttpFetch(agent: http.Agent): typeof fetch {
  return (input, init = {}) =>
    new Promise<Response>((resolve, reject) => {
      // The SDK passes a URL and an init; a Request would carry its own method, headers and body.
      if (input instanceof Request) throw new Error('nodeHttpFetch: pass a URL and an init, not a Request');
      if (init.body !== undefined && init.body !== null && typeof init.body !== 'string') {
        throw new Error('nodeHttpFetch: only string bodies (the MCP SDK sends JSON text)');
      }
      const headers: Record<string, string> = {};
      new Headers(init.headers).forEach((value, name) => {
        headers[name] = value;
      });
      const request = http.request(
        String(input),
        { method: init.method ?? 'GET', headers, agent, signal: init.signal ?? undefined },
        (response) => {
          try {
            const responseHeaders = new Headers();
            for (const [name, value] of Object.entries(response.headers)) {
              if (value !== undefined)
                responseHeaders.set(name, Array.isArray(value) ? value.join(', ') : value);
            }
            const status = response.statusCode ?? 502;
            const body = NO_BODY.has(status)
              ? null
              : (Readable.toWeb(response) as ReadableStream<Uint8Array>);
            if (!body) response.resume();
            resolve(
              new Response(body, { status, statusText: response.statusMessage, headers: responseHeaders }),
            );
          } catch (error) {
            response.destroy();
            reject(error);
          }
        },
      );
      request.on('error', reject);
      request.end(init.body ?? undefined);
    });
}
