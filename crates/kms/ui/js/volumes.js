// Volumes: for each tenant this token can see, the volumes whose keys its transit key wraps
// (envelope protection, from the key manager's wrap records) or its KV path holds (kv
// protection, the ceph-csi `vaulttokens` layout `<mount>/strongroom/<tenant>/<volume>`).
// Only metadata is read: never a secret's value. A token that may not list a mount's keys
// (a tenant's) gets the names its own policy grants, from sys/internal/ui/resultant-acl.
import { get, list, enc } from './api.js';
import { h, page, table, fmtTime, alertBox, badge } from './dom.js';
import { mounts } from './engines.js';

/** Names that `re` captures in the token's own rule paths (exact and glob). */
async function granted(re) {
  const r = await get('sys/internal/ui/resultant-acl');
  const paths = [...Object.keys(r.data.exact_paths || {}), ...Object.keys(r.data.glob_paths || {})];
  return [...new Set(paths.map((p) => (p.match(re) || [])[1]).filter(Boolean))];
}

/** LIST, or when that is refused (403), the names the token's policy names under it. */
async function listOrGranted(path, re) {
  try {
    return await list(path);
  } catch (e) {
    if (e.status !== 403) throw e;
    const names = await granted(re);
    if (!names.length) throw e;
    return names;
  }
}

const quote = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

async function envelope(m) {
  const out = [];
  const mp = quote(m.path);
  const re = new RegExp(`^${mp}/(?:volumes|encrypt|decrypt|rewrap|keys)/([^/*+]+)$`);
  for (const key of await listOrGranted(`${enc(m.path)}/keys`, re)) {
    const r = await get(`${enc(m.path)}/volumes/${enc(key)}`);
    for (const v of r.data.volumes) {
      out.push({ tenant: v.tenant, volume: v.volume, mode: 'envelope', where: `${m.path}/keys/${key}`,
        href: `/ui/secrets/${enc(m.path)}/keys/${enc(key)}`,
        version: `${v.key_version} of ${r.data.latest_version}`,
        rotated: fmtTime(v.last_wrapped), state: v.state });
    }
  }
  return out;
}

async function kvVolumes(m) {
  const out = [];
  const v2 = m.version === '2';
  const dir = (p) => (v2 ? `${enc(m.path)}/metadata/${p}` : `${enc(m.path)}/${p}`);
  const re = new RegExp(`^${quote(m.path)}/${v2 ? '(?:metadata|data)/' : ''}strongroom/([^/*+]+)/`);
  for (const t of await listOrGranted(dir('strongroom/'), re)) {
    const tenant = t.replace(/\/$/, '');
    for (const vol of await list(dir(`strongroom/${enc(tenant)}/`))) {
      if (vol.endsWith('/')) continue;
      const row = { tenant, volume: vol, mode: `kv v${m.version || 1}`, where: `${m.path}/strongroom/${tenant}/${vol}`,
        version: '—', rotated: '—', state: 'active' };
      if (v2) {
        const md = (await get(dir(`strongroom/${enc(tenant)}/${enc(vol)}`))).data;
        const cur = md.versions && md.versions[String(md.current_version)];
        row.version = String(md.current_version);
        row.rotated = fmtTime(md.updated_time);
        row.state = cur && (cur.destroyed || cur.deletion_time) ? 'deleted' : 'active';
      }
      out.push(row);
    }
  }
  return out;
}

export async function render(el) {
  const ms = await mounts();
  const rows = [];
  const problems = [];
  for (const m of ms) {
    const f = m.type === 'transit' ? envelope : m.type === 'kv' ? kvVolumes : null;
    if (!f) continue;
    try {
      rows.push(...await f(m));
    } catch (e) {
      problems.push(h('div', {}, h('p', {}, `${m.path}/:`), alertBox(e)));
    }
  }
  rows.sort((a, b) => (a.tenant + a.volume).localeCompare(b.tenant + b.volume));
  page(el, 'Volumes',
    h('p', { class: 'muted' }, 'What the key manager knows of each tenant\'s volumes: envelope volumes from their transit wraps, kv volumes from their KV entries.'),
    table('Volumes', ['Tenant', 'Volume', 'Protection', 'Key', 'Key version', 'Last rotation', 'State'],
      rows.map((r) => [r.tenant, r.volume, r.mode,
        r.href ? h('a', { href: r.href, 'data-link': true }, h('code', {}, r.where)) : h('code', {}, r.where),
        r.version, r.rotated, badge(r.state)])),
    problems);
}
