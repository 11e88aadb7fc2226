// The HTTP API the CLI uses, with the user's own token. The token lives in sessionStorage
// (this tab only, gone when it closes) and travels only in the X-Vault-Token header: never in
// a URL, never in localStorage or a cookie.

const KEY = 'strongroom.token';

export const session = {
  get token() { return sessionStorage.getItem(KEY); },
  set(token) { sessionStorage.setItem(KEY, token); },
  clear() { sessionStorage.removeItem(KEY); },
};

export class ApiError extends Error {
  constructor(status, errors) {
    super(errors.join('; ') || `HTTP ${status}`);
    this.status = status;
    this.errors = errors;
  }
}

/** Path segments are encoded one by one; `/` separates them. */
export function enc(path) {
  return String(path).split('/').map(encodeURIComponent).join('/');
}

/**
 * One call to /v1/<path>. `opts.query` is added to the URL (never a token);
 * `opts.anyStatus` returns the parsed body whatever the status (sys/health).
 */
export async function api(method, path, body, opts = {}) {
  const headers = { 'X-Vault-Request': 'true' };
  const token = opts.token === undefined ? session.token : opts.token;
  if (token) headers['X-Vault-Token'] = token;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const q = opts.query ? `?${new URLSearchParams(opts.query)}` : '';
  const r = await fetch(`/v1/${path}${q}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: 'omit',
    cache: 'no-store',
    redirect: 'error',
  });
  const text = await r.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch { json = null; }
  if (r.ok || opts.anyStatus) return json;
  const errors = json && Array.isArray(json.errors) ? json.errors : [text || r.statusText];
  throw new ApiError(r.status, errors.length ? errors : [`${r.status} ${r.statusText}`]);
}

export const get = (path, opts) => api('GET', path, undefined, opts);
export const post = (path, body = {}, opts) => api('POST', path, body, opts);
export const del = (path, opts) => api('DELETE', path, undefined, opts);

/** LIST: the keys, or [] when there are none (404). */
export async function list(path) {
  try {
    const r = await api('GET', path, undefined, { query: { list: 'true' } });
    return (r && r.data && r.data.keys) || [];
  } catch (e) {
    if (e.status === 404) return [];
    throw e;
  }
}
