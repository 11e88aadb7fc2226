// DOM helpers: elements are built with createElement and textContent only (never innerHTML),
// so nothing the server or a user wrote is ever parsed as markup.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'value') el.value = v;
    else if (k === 'checked') el.checked = !!v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

let seq = 0;
/** A labelled input: the label wraps the control, so it is named for assistive tech. */
export function field(label, attrs = {}) {
  const id = attrs.id || `f${++seq}`;
  const tag = attrs.multiline ? 'textarea' : attrs.options ? 'select' : 'input';
  const { multiline, options, ...rest } = attrs;
  const control = h(tag, { ...rest, id }, (options || []).map((o) =>
    h('option', { value: o.value ?? o }, o.label ?? o)));
  return h('label', { for: id }, label, control);
}

export function checkbox(label, attrs = {}) {
  return h('label', { class: 'check' }, h('input', { type: 'checkbox', ...attrs }), label);
}

/** The server's message for a failed call, announced to screen readers. */
export function alertBox(err) {
  const status = err && err.status ? `${err.status}: ` : '';
  const text = err && err.errors ? err.errors.join('\n') : String(err && err.message || err);
  return h('div', { class: 'alert', role: 'alert' }, status + (text.trim() || 'request failed'));
}

export function note(text) {
  return h('p', { class: 'note', role: 'status' }, text);
}

export function table(caption, headers, rows) {
  return h('div', { class: 'table-wrap' },
    h('table', {},
      h('caption', { class: 'visually-hidden' }, caption),
      h('thead', {}, h('tr', {}, headers.map((x) => h('th', { scope: 'col' }, x)))),
      h('tbody', {}, rows.length
        ? rows.map((r) => h('tr', {}, r.map((c, i) => h('td', { 'data-label': headers[i] }, c))))
        : h('tr', {}, h('td', { colspan: headers.length, class: 'muted' }, 'Nothing here.')))));
}

export function dl(pairs) {
  return h('dl', { class: 'kv' }, pairs.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
}

export function link(href, text) {
  return h('a', { href, 'data-link': true }, text);
}

/** A state word, coloured by its class (`ok`, `warn`, `bad`, or the state's own name). */
export function badge(state, cls = state) {
  return h('span', { class: `badge ${cls}` }, state);
}

export function fmtTime(v) {
  if (v === undefined || v === null || v === '' || v === 0) return '—';
  const d = typeof v === 'number' ? new Date(v * 1000) : new Date(v);
  return Number.isNaN(d.getTime()) ? String(v) : d.toISOString().replace('.000Z', 'Z');
}

export function announce(text) {
  const live = document.getElementById('live');
  if (live) live.textContent = text;
}

/** Replace the page content and move focus to its heading. */
export function page(main, title, ...children) {
  const heading = h('h1', { tabindex: '-1' }, title);
  main.replaceChildren(heading, ...children.flat());
  document.title = `${title} · Strongroom`;
  heading.focus();
  return main;
}

/** A form whose submit runs `action(form)`, showing any error in the form's own alert slot. */
export function form(attrs, children, action) {
  const slot = h('div');
  const f = h('form', attrs, children, slot);
  f.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    slot.replaceChildren();
    try {
      await action(f);
    } catch (e) {
      slot.replaceChildren(alertBox(e));
    }
  });
  return f;
}

export function value(f, name) {
  const el = f.elements.namedItem(name);
  return el ? (el.type === 'checkbox' ? el.checked : el.value) : undefined;
}

/** Comma-separated list field → array of trimmed non-empty strings. */
export function list(text) {
  return String(text || '').split(',').map((s) => s.trim()).filter(Boolean);
}

/** Go to a page of the UI (the shell routes on popstate). */
export function navigate(path) {
  history.pushState(null, '', path);
  window.dispatchEvent(new PopStateEvent('popstate'));
}

/** Show another page in place of this one (no history entry: Back does not come here again). */
export function redirect(path) {
  history.replaceState(null, '', path);
  window.dispatchEvent(new PopStateEvent('popstate'));
}
