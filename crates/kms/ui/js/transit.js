// Transit: keys (list, create, read config and versions), rotate, min_decryption_version,
// and the volumes each key wraps.
import { get, post, list, enc } from './api.js';
import { h, page, table, link, field, form, value, dl, fmtTime, alertBox, navigate, badge } from './dom.js';

const keyUrl = (m, k) => `/ui/secrets/${enc(m.path)}/keys/${enc(k)}`;

export function render(el, m, inner) {
  const k = inner.match(/^keys\/(.+)$/);
  return k ? key(el, m, k[1]) : keys(el, m);
}

async function keys(el, m) {
  let body;
  try {
    const ks = await list(`${enc(m.path)}/keys`);
    body = table('Transit keys', ['Key'], ks.map((k) => [link(keyUrl(m, k), k)]));
  } catch (e) {
    body = alertBox(e);
  }
  const create = form({ class: 'inline', 'aria-label': 'Create a transit key' }, [
    field('Key name', { name: 'name', required: true }),
    field('Type', { name: 'type', options: ['aes256-gcm96', 'aes128-gcm96', 'chacha20-poly1305'] }),
    h('label', { class: 'check' }, h('input', { type: 'checkbox', name: 'derived' }), 'Derived (needs a context)'),
    h('button', { type: 'submit' }, 'Create key'),
  ], async (f) => {
    const name = value(f, 'name').trim();
    await post(`${enc(m.path)}/keys/${enc(name)}`, { type: value(f, 'type'), derived: value(f, 'derived') });
    navigate(keyUrl(m, name));
  });
  page(el, `${m.path}/ (transit)`, body, h('h2', {}, 'Create a key'), create);
}

async function key(el, m, name) {
  const kp = `${enc(m.path)}/keys/${enc(name)}`;
  const r = await get(kp);
  const d = r.data;
  const versions = Object.entries(d.keys || {}).sort((a, b) => Number(b[0]) - Number(a[0]))
    .map(([v, t]) => [`Version ${v}`, fmtTime(t), Number(v) < d.min_decryption_version
      ? badge('undecryptable')
      : badge(Number(v) === d.latest_version ? 'latest' : 'decryptable', 'ok')]);
  const rotate = h('button', { type: 'button', onclick: async (ev) => {
    try { await post(`${kp}/rotate`); navigate(keyUrl(m, name)); } catch (e) { ev.target.after(alertBox(e)); }
  } }, 'Rotate key');
  const minForm = form({ class: 'inline', 'aria-label': 'Key configuration' }, [
    field('Minimum decryption version', { name: 'min', type: 'number', min: '1', max: String(d.latest_version), value: String(d.min_decryption_version) }),
    h('button', { type: 'submit' }, 'Save'),
  ], async (f) => {
    await post(`${kp}/config`, { min_decryption_version: Number(value(f, 'min')) });
    navigate(keyUrl(m, name));
  });
  page(el, `Transit key ${name}`,
    h('p', {}, link(`/ui/secrets/${enc(m.path)}/`, `All keys of ${m.path}/`)),
    dl([['Type', d.type], ['Derived', String(d.derived)], ['Latest version', String(d.latest_version)],
      ['Minimum decryption version', String(d.min_decryption_version)],
      ['Minimum encryption version', String(d.min_encryption_version)],
      ['Deletion allowed', String(d.deletion_allowed)],
      ['Auto-rotate period', d.auto_rotate_period ? `${d.auto_rotate_period}s` : 'never']]),
    h('div', { class: 'actions' }, rotate),
    minForm,
    h('h2', {}, 'Versions'), table('Key versions', ['Version', 'Created', 'State'], versions),
    h('h2', {}, 'Volumes wrapped by this key'), await volumesOf(m, name));
}

async function volumesOf(m, name) {
  try {
    const r = await get(`${enc(m.path)}/volumes/${enc(name)}`);
    return table(`Volumes wrapped by ${name}`, ['Tenant', 'Volume', 'Key version', 'Last wrap', 'State'],
      r.data.volumes.map((v) => [v.tenant, v.volume, String(v.key_version), fmtTime(v.last_wrapped), badge(v.state)]));
  } catch (e) {
    return alertBox(e);
  }
}

