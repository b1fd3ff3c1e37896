/**
 * The path a plain `node:http` handler routes on, matched as Express matched it: any case, an optional
 * trailing slash, any query string or fragment, and a request line in absolute form (`POST http://host/mcp`, as a
 * forward proxy sends it). Null when the URL cannot be read.
 */
export function requestPath(url: string | undefined): string | null {
  if (!url) return null;
  let path: string;
  try {
    path = url.startsWith('/') ? url.split(/[?#]/, 1)[0]! : new URL(url).pathname;
  } catch {
    return null;
  }
  path = path.toLowerCase();
  return path.length > 1 && path.endsWith('/') ? path.slice(0, -1) : path;
}
