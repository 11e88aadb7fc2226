// Policies (with the server's parse error shown at its line), auth methods and userpass
// users, tokens (look up self, create, revoke by accessor).
import { get, post, del, list, enc, api } from './api.js';
import { h, page, table, link, field, form, value, dl, fmtTime, alertBox, note, navigate, list as csv } from './dom.js';

export async function policies(el) {
  let body;
  try {
    const names = await list('sys/policies/acl');
    body = table('Policies', ['Name'], names.map((n) => [link(`/ui/policies/${enc(n)}`, n)]));
  } catch (e) {
    body = alertBox(e);
  }
  page(el, 'ACL policies', body, h('h2', {}, 'Write a policy'), policyForm('', ''));
}

export async function policy(el, m) {
  const name = m[1];
  const r = await get(`sys/policies/acl/${enc(name)}`);
  const remove = h('button', { type: 'button', class: 'danger', onclick: async (ev) => {
    try { await del(`sys/policies/acl/${enc(name)}`); navigate('/ui/policies'); } catch (e) { ev.target.after(alertBox(e)); }
  } }, 'Delete policy');
  page(el, `Policy ${name}`, h('p', {}, link('/ui/policies', 'All policies')),
    policyForm(name, r.data.policy), name === 'root' || name === 'default' ? null : remove);
}

/** The line a parse error points at: `line N` / `N:M` in the message, or the `path "x"` it names. */
export function errorLine(message, text) {
  const lines = text.split('\n');
  const at = message.match(/line (\d+)/i) || message.match(/(?:^|\s|:)(\d+):(\d+)/);
  if (at) return Number(at[1]);
  const named = message.match(/path "((?:[^"\\]|\\.)*)"/);
  if (named) {
    const i = lines.findIndex((l) => l.includes(`"${named[1]}"`) && /\bpath\b/.test(l));
    if (i >= 0) return i + 1;
  }
  return 0;
}

function policyForm(name, text) {
  const where = h('div');
  const f = form({ 'aria-label': 'Policy' }, [
    field('Name', { name: 'name', required: true, value: name, readonly: name ? true : undefined }),
    field('Policy (HCL)', { name: 'policy', multiline: true, required: true, value: text, spellcheck: 'false', rows: 12 }),
    h('button', { type: 'submit' }, 'Save policy'),
    where,
  ], async (fm) => {
    where.replaceChildren();
    const n = value(fm, 'name').trim();
    const body = value(fm, 'policy');
    try {
      await api('PUT', `sys/policies/acl/${enc(n)}`, { policy: body });
    } catch (e) {
      showAt(where, e, body);
      throw e;
    }
    navigate(`/ui/policies/${enc(n)}`);
  });
  return f;
}

/** The policy's lines with the one the server's error names marked. */
function showAt(where, e, text) {
  const line = errorLine((e.errors || [e.message]).join(' '), text);
  if (!line) return;
  where.append(h('p', { id: 'policy-error-line' }, `The error is at line ${line}:`),
    h('ol', { class: 'lines', 'aria-describedby': 'policy-error-line' }, text.split('\n').map((l, i) =>
      h('li', { class: i + 1 === line ? 'error' : undefined, 'aria-current': i + 1 === line ? 'true' : undefined }, l || ' '))));
}

export async function methods(el) {
  const r = await get('sys/auth');
  const ms = r.data || r;
  const rows = Object.entries(ms).filter(([, v]) => v && v.type).map(([p, v]) => [
    v.type === 'userpass' ? link(`/ui/access/${enc(p.replace(/\/$/, ''))}`, p) : p,
    v.type, v.accessor || '', v.description || '']);
  const enable = form({ class: 'inline', 'aria-label': 'Enable an auth method' }, [
    field('Path', { name: 'path', required: true, value: 'userpass' }),
    field('Type', { name: 'type', options: ['userpass'] }),
    h('button', { type: 'submit' }, 'Enable method'),
  ], async (f) => {
    const p = value(f, 'path').trim().replace(/^\/+|\/+$/g, '');
    await post(`sys/auth/${enc(p)}`, { type: value(f, 'type') });
    navigate(`/ui/access/${enc(p)}`);
  });
  page(el, 'Auth methods', table('Auth methods', ['Path', 'Type', 'Accessor', 'Description'], rows),
    h('h2', {}, 'Enable an auth method'), enable);
}

export async function users(el, m) {
  const mount = m[1];
  let body;
  try {
    const names = await list(`auth/${enc(mount)}/users`);
    body = table(`Users of ${mount}`, ['User', 'Policies', ''], await Promise.all(names.map(async (u) => {
      const info = await get(`auth/${enc(mount)}/users/${enc(u)}`).catch(() => null);
      const pol = info ? (info.data.token_policies || info.data.policies || []).join(', ') : '';
      return [u, pol, h('button', { type: 'button', class: 'danger', onclick: async (ev) => {
        try { await del(`auth/${enc(mount)}/users/${enc(u)}`); navigate(location.pathname); } catch (e) { ev.target.after(alertBox(e)); }
      } }, `Delete ${u}`)];
    })));
  } catch (e) {
    body = alertBox(e);
  }
  const create = form({ 'aria-label': 'Create or update a user' }, [
    field('Username', { name: 'username', required: true, autocomplete: 'off' }),
    field('Password', { name: 'password', type: 'password', required: true, autocomplete: 'new-password' }),
    field('Policies (comma-separated)', { name: 'policies' }),
    h('button', { type: 'submit' }, 'Save user'),
  ], async (f) => {
    await post(`auth/${enc(mount)}/users/${enc(value(f, 'username').trim())}`,
      { password: value(f, 'password'), token_policies: csv(value(f, 'policies')) });
    navigate(location.pathname);
  });
  page(el, `Userpass users at ${mount}/`, h('p', {}, link('/ui/access', 'All auth methods')), body,
    h('h2', {}, 'Create or update a user'), create);
}

export async function tokens(el) {
  const self = await get('auth/token/lookup-self');
  const d = self.data;
  const created = h('div');
  const create = form({ 'aria-label': 'Create a token' }, [
    field('Policies (comma-separated)', { name: 'policies' }),
    field('TTL', { name: 'ttl', placeholder: '1h' }),
    field('Display name', { name: 'display_name' }),
    h('button', { type: 'submit' }, 'Create token'),
  ], async (f) => {
    const body = { policies: csv(value(f, 'policies')), display_name: value(f, 'display_name') || undefined };
    if (value(f, 'ttl')) body.ttl = value(f, 'ttl');
    const r = await post('auth/token/create', body);
    created.replaceChildren(note('Token created. Copy it now: it is not shown again.'),
      dl([['Token', h('code', {}, r.auth.client_token)], ['Accessor', h('code', {}, r.auth.accessor)],
        ['Policies', r.auth.policies.join(', ')], ['TTL', `${r.auth.lease_duration}s`]]));
  });
  const revoke = form({ class: 'inline', 'aria-label': 'Revoke a token by accessor' }, [
    field('Accessor', { name: 'accessor', required: true, autocomplete: 'off' }),
    h('button', { type: 'submit', class: 'danger' }, 'Revoke'),
  ], async (f) => {
    await post('auth/token/revoke-accessor', { accessor: value(f, 'accessor').trim() });
    f.reset();
    f.append(note('Revoked.'));
  });
  page(el, 'Tokens', h('h2', {}, 'This token'),
    dl([['Display name', d.display_name], ['Policies', (d.policies || []).join(', ')],
      ['Accessor', h('code', {}, d.accessor)], ['TTL', d.ttl ? `${d.ttl}s` : 'never expires'],
      ['Expires', fmtTime(d.expire_time)], ['Created', fmtTime(d.creation_time)]]),
    h('h2', {}, 'Create a token'), create, created,
    h('h2', {}, 'Revoke by accessor'), revoke);
}
