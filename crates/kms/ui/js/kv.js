// KV v1 and v2: browse by path, read, create, edit, delete; versions and metadata for v2.
import { get, post, del, list, enc, api } from './api.js';
import { h, page, table, link, field, form, value, dl, fmtTime, alertBox, navigate, badge } from './dom.js';

const v2 = (m) => m.version === '2';
const base = (m, p) => `/ui/secrets/${enc(m.path)}/${enc(p)}`;
const dataPath = (m, p) => (v2(m) ? `${enc(m.path)}/data/${enc(p)}` : `${enc(m.path)}/${enc(p)}`);

function crumbs(m, p) {
  const parts = p.split('/').filter(Boolean);
  let acc = '';
  const items = [h('li', {}, link(`/ui/secrets/${enc(m.path)}/`, `${m.path}`))];
  parts.forEach((seg, i) => {
    const last = i === parts.length - 1 && !p.endsWith('/');
    acc += seg + (last ? '' : '/');
    items.push(h('li', {}, last ? h('span', { 'aria-current': 'page' }, seg) : link(base(m, acc), seg)));
  });
  return h('nav', { 'aria-label': 'Path' }, h('ol', { class: 'crumbs' }, items));
}

export function render(el, m, p, query) {
  return p === '' || p.endsWith('/') ? browse(el, m, p) : secret(el, m, p, query);
}

/** The JSON object typed in a form field, or a clear error. */
function parseData(text) {
  let d;
  try { d = JSON.parse(text); } catch (e) { throw new Error(`Data is not valid JSON: ${e.message}`); }
  if (!d || typeof d !== 'object' || Array.isArray(d)) throw new Error('Data must be a JSON object, like {"key": "value"}');
  return d;
}

async function write(m, p, data) {
  await post(dataPath(m, p), v2(m) ? { data } : data);
}

async function browse(el, m, p) {
  const listPath = v2(m) ? `${enc(m.path)}/metadata/${enc(p)}` : `${enc(m.path)}/${enc(p)}`;
  let body;
  try {
    const keys = await list(listPath);
    body = table(`Keys under ${m.path}/${p}`, ['Key'], keys.map((k) => [link(base(m, p + k), k)]));
  } catch (e) {
    body = alertBox(e);
  }
  const create = form({ 'aria-label': 'Create a secret' }, [
    field('Path of the new secret', { name: 'path', required: true, value: p, placeholder: 'volume-1' }),
    field('Data (a JSON object)', { name: 'data', multiline: true, required: true, value: '{\n  "key": "value"\n}' }),
    h('button', { type: 'submit' }, 'Save secret'),
  ], async (f) => {
    const path = value(f, 'path').replace(/^\/+/, '');
    await write(m, path, parseData(value(f, 'data')));
    navigate(base(m, path));
  });
  page(el, `${m.path}/${p}`, crumbs(m, p), h('p', { class: 'muted' }, `KV version ${m.version || '1'}`),
    body, h('h2', {}, 'Create a secret'), create);
}

async function secret(el, m, p, query) {
  const version = query.get('version');
  const r = await api('GET', dataPath(m, p), undefined, version ? { query: { version } } : {})
    .catch((e) => e);
  const parts = [crumbs(m, p)];
  let data = null;
  if (r instanceof Error) {
    parts.push(r.status === 404 ? h('p', { role: 'status' }, 'No secret at this path (or its latest version is deleted).') : alertBox(r));
  } else {
    data = v2(m) ? r.data.data : r.data;
    const meta = v2(m) ? r.data.metadata : null;
    if (data) {
      parts.push(table('Secret data', ['Key', 'Value'], Object.entries(data).map(([k, v]) =>
        [k, masked(k, typeof v === 'string' ? v : JSON.stringify(v))])));
    } else {
      parts.push(h('p', { role: 'status' }, `Version ${meta && meta.version} is ${meta && meta.destroyed ? 'destroyed' : 'deleted'}.`));
    }
  }
  parts.push(editForm(m, p, data), h('div', { class: 'actions' },
    h('button', { type: 'button', class: 'danger', onclick: () => remove(el, m, p) }, 'Delete secret')));
  if (v2(m)) parts.push(await metadata(m, p));
  page(el, `${m.path}/${p}${version ? ` (version ${version})` : ''}`, parts);
}

/** A value hidden until asked for (over-the-shoulder), with a button to show or hide it. */
function masked(key, text) {
  const code = h('code', { hidden: true }, text);
  const dots = h('span', { 'aria-hidden': 'true' }, '••••••••');
  const button = h('button', { type: 'button', class: 'secondary', 'aria-expanded': 'false', onclick: () => {
    const show = code.hidden;
    code.hidden = !show;
    dots.hidden = show;
    button.setAttribute('aria-expanded', String(show));
    button.textContent = `${show ? 'Hide' : 'Show'} ${key}`;
  } }, `Show ${key}`);
  return h('div', { class: 'actions' }, dots, code, button);
}

/** The edit form, folded (its text holds the values) until opened. */
function editForm(m, p, data) {
  const f = form({ 'aria-label': 'Edit secret' }, [
    field('Data (a JSON object)', { name: 'data', multiline: true, value: JSON.stringify(data || {}, null, 2) }),
    h('button', { type: 'submit' }, 'Save new version'),
  ], async (fm) => {
    await write(m, p, parseData(value(fm, 'data')));
    navigate(base(m, p));
  });
  return h('details', { class: 'edit', open: data ? undefined : true }, h('summary', {}, data ? 'Edit' : 'Write'), f);
}

async function remove(el, m, p) {
  try {
    await del(dataPath(m, p));
    navigate(base(m, p.replace(/[^/]*$/, '')));
  } catch (e) {
    el.append(alertBox(e));
  }
}

async function metadata(m, p) {
  const mp = `${enc(m.path)}/metadata/${enc(p)}`;
  let r;
  try { r = await get(mp); } catch (e) { return h('section', {}, h('h2', {}, 'Versions and metadata'), alertBox(e)); }
  const d = r.data;
  const rows = Object.entries(d.versions || {}).sort((a, b) => Number(b[0]) - Number(a[0])).map(([n, v]) => {
    const st = v.destroyed ? 'destroyed' : v.deletion_time ? 'deleted' : 'active';
    const act = (label, path, cls) => h('button', { type: 'button', class: cls || 'secondary', onclick: async (ev) => {
      try { await post(`${enc(m.path)}/${path}/${enc(p)}`, { versions: [Number(n)] }); navigate(base(m, p)); } catch (e) { ev.target.after(alertBox(e)); }
    } }, `${label} version ${n}`);
    return [link(`${base(m, p)}?version=${n}`, `Version ${n}`), fmtTime(v.created_time), badge(st, st === 'destroyed' ? 'bad' : st),
      h('div', { class: 'actions' }, st === 'deleted' ? act('Undelete', 'undelete') : null,
        st !== 'destroyed' ? act('Destroy', 'destroy', 'danger') : null)];
  });
  return h('section', { 'aria-label': 'Versions and metadata' },
    h('h2', {}, 'Versions and metadata'),
    dl([['Current version', String(d.current_version)], ['Oldest version', String(d.oldest_version)],
      ['Max versions', String(d.max_versions || 'unlimited')], ['Created', fmtTime(d.created_time)],
      ['Updated', fmtTime(d.updated_time)]]),
    table('Versions', ['Version', 'Created', 'State', 'Actions'], rows),
    h('button', { type: 'button', class: 'danger', onclick: async (ev) => {
      try { await del(mp); navigate(base(m, p.replace(/[^/]*$/, ''))); } catch (e) { ev.target.after(alertBox(e)); }
    } }, 'Delete all versions and metadata'));
}
