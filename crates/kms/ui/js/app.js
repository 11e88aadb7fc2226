// The shell: routing by path under /ui/ (history API), login and logout, the navigation.
import { session, get, post, enc } from './api.js';
import { h, page, field, form, value, alertBox, announce, navigate, redirect } from './dom.js';
import * as engines from './engines.js';
import * as access from './access.js';
import * as status from './status.js';
import * as volumes from './volumes.js';

const main = () => document.getElementById('main');

/** Routes: pattern, handler(main, match, query), public (no token needed). */
const ROUTES = [
  [/^\/ui\/?$/, home, true],
  [/^\/ui\/login$/, login, true],
  [/^\/ui\/status$/, status.health, true],
  [/^\/ui\/secrets$/, engines.list],
  [/^\/ui\/secrets\/(.+)$/, engines.open],
  [/^\/ui\/volumes$/, volumes.render],
  [/^\/ui\/policies$/, access.policies],
  [/^\/ui\/policies\/(.+)$/, access.policy],
  [/^\/ui\/access$/, access.methods],
  [/^\/ui\/access\/(.+)$/, access.users],
  [/^\/ui\/tokens$/, access.tokens],
  [/^\/ui\/audit$/, status.audit],
];

const go = navigate;

async function route() {
  const path = decodeURI(location.pathname);
  const query = new URLSearchParams(location.search);
  shell();
  for (const [re, handler, isPublic] of ROUTES) {
    const m = path.match(re);
    if (!m) continue;
    if (!isPublic && !session.token) return login(main());
    try {
      await handler(main(), m, query);
    } catch (e) {
      page(main(), 'Error', alertBox(e));
    }
    return;
  }
  page(main(), 'Not found', h('p', {}, 'No page at this address.'));
}

function home(el) {
  return session.token ? redirect('/ui/secrets') : login(el);
}

/** Navigation and the user box, by login state; the current page marked. */
function shell() {
  const logged = !!session.token;
  const nav = document.getElementById('nav');
  nav.hidden = !logged;
  document.getElementById('who').hidden = !logged;
  document.getElementById('menu-toggle').hidden = !logged;
  for (const a of nav.querySelectorAll('a')) {
    const here = location.pathname === a.pathname || location.pathname.startsWith(`${a.pathname}/`);
    if (here) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
}

async function login(el) {
  const method = field('Method', { name: 'method', options: [
    { value: 'token', label: 'Token' }, { value: 'userpass', label: 'Username and password' }] });
  const tokenF = field('Token', { name: 'token', type: 'password', autocomplete: 'off' });
  const mountF = field('Auth mount path', { name: 'mount', value: 'userpass' });
  const userF = field('Username', { name: 'username', autocomplete: 'username' });
  const passF = field('Password', { name: 'password', type: 'password', autocomplete: 'current-password' });
  const up = [mountF, userF, passF];
  const select = method.querySelector('select');
  const sync = () => {
    const isToken = select.value === 'token';
    tokenF.hidden = !isToken;
    for (const f of up) f.hidden = isToken;
  };
  select.addEventListener('change', sync);
  const f = form({ 'aria-label': 'Log in' }, [method, tokenF, ...up,
    h('button', { type: 'submit' }, 'Log in')], async (fm) => {
    let token;
    if (value(fm, 'method') === 'token') {
      token = value(fm, 'token').trim();
      await get('auth/token/lookup-self', { token });
    } else {
      const r = await post(`auth/${enc(value(fm, 'mount'))}/login/${enc(value(fm, 'username'))}`,
        { password: value(fm, 'password') }, { token: null });
      token = r.auth.client_token;
    }
    fm.reset();
    session.set(token);
    await whoami();
    announce('Logged in');
    // a page asked for before logging in is shown now; otherwise the engines
    const asked = location.pathname;
    if (asked === '/ui/' || asked === '/ui' || asked === '/ui/login') go('/ui/secrets');
    else redirect(asked + location.search);
  });
  sync();
  page(el, 'Log in to Strongroom', f);
  const seal = await get('sys/seal-status', { token: null }).catch(() => null);
  if (seal && seal.sealed) {
    el.append(h('div', { class: 'alert', role: 'alert' }, 'The server is sealed. ',
      h('a', { href: '/ui/status', 'data-link': true }, 'Unseal it'), ' before logging in.'));
  }
}

async function whoami() {
  const who = document.getElementById('who-name');
  try {
    const r = await get('auth/token/lookup-self');
    who.textContent = r.data.display_name || 'token';
  } catch {
    who.textContent = '';
  }
}

function logout() {
  session.clear();
  document.getElementById('who-name').textContent = '';
  announce('Logged out');
  go('/ui/login');
}

function setup() {
  document.addEventListener('click', (ev) => {
    const a = ev.target.closest && ev.target.closest('a[data-link]');
    if (!a || ev.ctrlKey || ev.metaKey || ev.shiftKey || a.origin !== location.origin) return;
    ev.preventDefault();
    collapse(true);
    go(a.pathname + a.search);
  });
  window.addEventListener('popstate', route);
  document.getElementById('logout').addEventListener('click', logout);
  const toggle = document.getElementById('menu-toggle');
  toggle.addEventListener('click', () => collapse(toggle.getAttribute('aria-expanded') === 'true'));
  collapse(true);
  if (session.token) whoami();
  route();
}

function collapse(closed) {
  document.getElementById('nav').dataset.collapsed = String(closed);
  document.getElementById('menu-toggle').setAttribute('aria-expanded', String(!closed));
}

setup();
