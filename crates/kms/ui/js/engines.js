// Secrets engines: the mounts this token may see (the UI preflight), enabling one, and
// opening one (KV or transit pages by its type).
import { get, post, enc } from './api.js';
import { h, page, table, link, field, form, value, navigate } from './dom.js';
import * as kv from './kv.js';
import * as transit from './transit.js';

const HIDDEN = new Set(['system', 'identity', 'cubbyhole']);

/** The secret mounts visible to this token: [{path (no slash), type, version, description}]. */
export async function mounts() {
  const r = await get('sys/internal/ui/mounts');
  return Object.entries(r.data.secret || {}).map(([p, m]) => ({
    path: p.replace(/\/$/, ''),
    type: m.type,
    version: (m.options && m.options.version) || (m.type === 'kv' ? '1' : ''),
    description: m.description || '',
  }));
}

function kindOf(m) {
  if (m.type === 'kv' || m.type === 'generic') return m.version === '2' ? 'kv v2' : 'kv v1';
  return m.type;
}

export async function list(el) {
  const ms = (await mounts()).filter((m) => !HIDDEN.has(m.type));
  const rows = ms.map((m) => [link(`/ui/secrets/${enc(m.path)}/`, `${m.path}/`), kindOf(m), m.description]);
  const enable = form({ class: 'inline', 'aria-label': 'Enable a secrets engine' }, [
    field('Path', { name: 'path', required: true, placeholder: 'ocs' }),
    field('Type', { name: 'type', options: [
      { value: 'kv-v2', label: 'KV version 2' }, { value: 'kv', label: 'KV version 1' },
      { value: 'transit', label: 'Transit' }] }),
    field('Description', { name: 'description' }),
    h('button', { type: 'submit' }, 'Enable engine'),
  ], async (f) => {
    const path = value(f, 'path').trim().replace(/^\/+|\/+$/g, '');
    const type = value(f, 'type');
    const body = type === 'kv-v2'
      ? { type: 'kv', options: { version: '2' } }
      : { type, options: type === 'kv' ? { version: '1' } : {} };
    body.description = value(f, 'description');
    await post(`sys/mounts/${enc(path)}`, body);
    navigate(`/ui/secrets/${enc(path)}/`);
  });
  page(el, 'Secrets engines', table('Secrets engines', ['Path', 'Type', 'Description'], rows),
    h('h2', {}, 'Enable an engine'), enable);
}

/** `/ui/secrets/<mount>/<path>`: the longest visible mount that prefixes the path. */
export async function open(el, m, query) {
  const rest = m[1];
  const ms = (await mounts()).sort((a, b) => b.path.length - a.path.length);
  const mount = ms.find((x) => rest === x.path || rest.startsWith(`${x.path}/`));
  if (!mount) {
    page(el, 'Secrets engine not found', h('p', {}, `No engine visible to you at ${rest}.`),
      link('/ui/secrets', 'All secrets engines'));
    return;
  }
  const inner = rest.slice(mount.path.length + 1);
  if (mount.type === 'transit') return transit.render(el, mount, inner);
  if (mount.type === 'kv' || mount.type === 'generic') return kv.render(el, mount, inner, query);
  page(el, `${mount.path}/`, h('p', {}, `This UI has no page for ${mount.type} engines.`));
}
