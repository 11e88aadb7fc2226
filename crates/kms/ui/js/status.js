// Health, seal status and unsealing with a key share (no token needed), audit devices.
import { get, api, session } from './api.js';
import { h, page, dl, field, form, value, alertBox, table, navigate, badge, link } from './dom.js';

export async function health(el) {
  const [hl, seal] = await Promise.all([
    get('sys/health', { anyStatus: true, token: null }),
    get('sys/seal-status', { token: null }),
  ]);
  const parts = [
    h('h2', {}, 'Health'),
    dl([['Initialized', String(hl.initialized)], ['Sealed', badge(hl.sealed ? 'sealed' : 'unsealed', hl.sealed ? 'bad' : 'ok')],
      ['Standby', String(hl.standby)], ['Version', hl.version || ''], ['Cluster', hl.cluster_name || '']]),
    h('h2', {}, 'Seal status'),
    dl([['Sealed', seal.sealed ? 'yes' : 'no'], ['Key shares', String(seal.n)], ['Threshold', String(seal.t)],
      ['Unseal progress', `${seal.progress} of ${seal.t}`], ['Seal type', seal.type]]),
  ];
  if (seal.sealed && seal.initialized) parts.push(unsealForm(seal));
  if (!seal.sealed && session.token) parts.push(sealButton());
  if (!session.token) parts.push(h('p', {}, link('/ui/login', 'Log in')));
  page(el, 'Server status', parts);
}

function unsealForm(seal) {
  return form({ 'aria-label': 'Unseal' }, [
    h('h2', {}, 'Unseal'),
    h('p', {}, `Enter key shares one at a time: ${seal.progress} of ${seal.t} given.`),
    field('Unseal key share', { name: 'key', type: 'password', required: true, autocomplete: 'off' }),
    h('button', { type: 'submit' }, 'Submit key share'),
  ], async (f) => {
    const r = await api('PUT', 'sys/unseal', { key: value(f, 'key').trim() }, { token: null });
    f.reset();
    navigate('/ui/status');
    return r;
  });
}

function sealButton() {
  return h('div', { class: 'actions' }, h('button', { type: 'button', class: 'danger', onclick: async (ev) => {
    try { await api('PUT', 'sys/seal'); navigate('/ui/status'); } catch (e) { ev.target.after(alertBox(e)); }
  } }, 'Seal the server'));
}

export async function audit(el) {
  let body;
  try {
    const r = await get('sys/audit');
    const ds = r.data || r;
    body = table('Audit devices', ['Path', 'Type', 'Description', 'Options'],
      Object.entries(ds).filter(([, v]) => v && v.type).map(([p, v]) =>
        [p, v.type, v.description || '', Object.entries(v.options || {}).map(([k, x]) => `${k}=${x}`).join(', ')]));
  } catch (e) {
    body = alertBox(e);
  }
  page(el, 'Audit devices', body);
}
