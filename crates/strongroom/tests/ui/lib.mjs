// Shared by the browser scenarios: a headless Debian chromium driven by playwright-core,
// with the checks every page must pass (no console error, no token in any URL, the CSP on
// every UI response, every form control labelled) and a screenshot per page.
import { chromium } from 'playwright-core';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';

export class Failure extends Error {}

export function check(ok, what) {
  if (!ok) throw new Failure(what);
}

export async function open({ base, shots, secrets, viewport, ignoreHTTPSErrors }) {
  rmSync(shots, { recursive: true, force: true });
  mkdirSync(shots, { recursive: true });
  const browser = await chromium.launch({
    executablePath: process.env.STRONGROOM_CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
  });
  const context = await browser.newContext({ viewport: viewport || { width: 1280, height: 900 }, ignoreHTTPSErrors });
  const page = await context.newPage();
  // the test machine is shared (2 cores): generous waits, failures still name their step
  page.setDefaultTimeout(60000);
  const t = { browser, page, base, shots, secrets: [...secrets], problems: [], apiErrors: 0, shotCount: 0 };
  page.on('console', (msg) => {
    if (msg.type() !== 'error') return;
    // Chromium logs every non-2xx fetch as "Failed to load resource"; the API's own refusals
    // (401/403/404/400, 503 sealed) are expected answers that the page shows, so those are
    // counted apart. Anything else is a console error.
    const url = msg.location() && msg.location().url;
    if (/Failed to load resource: the server responded with a status of (400|403|404|503)/.test(msg.text())
      && url && url.startsWith(`${base}/v1/`)) {
      t.apiErrors += 1;
      return;
    }
    t.problems.push(`console error: ${msg.text()} (${url || 'no url'})`);
  });
  page.on('pageerror', (e) => t.problems.push(`page error: ${e.message}`));
  page.on('request', (req) => {
    const url = req.url();
    for (const s of t.secrets) if (s && url.includes(encodeURIComponent(s))) t.problems.push(`a secret in a URL: ${url}`);
    if (/[?&](token|client_token|x-vault-token)=/i.test(url)) t.problems.push(`token parameter in a URL: ${url}`);
  });
  page.on('response', (res) => {
    const url = res.url();
    if (!url.startsWith(`${base}/ui`) && url !== `${base}/`) return;
    const csp = res.headers()['content-security-policy'] || '';
    if (!/script-src 'self'/.test(csp) || /unsafe-inline|unsafe-eval/.test(csp)) {
      t.problems.push(`UI response without a strict CSP: ${url} (${csp || 'none'})`);
    }
  });
  return t;
}

/** Every form control on the page has a label (or an aria-label). */
export async function labelled(t) {
  const bad = await t.page.evaluate(() => [...document.querySelectorAll('input, select, textarea')]
    .filter((e) => !e.hidden && e.type !== 'hidden' && !(e.labels && e.labels.length) && !e.getAttribute('aria-label'))
    .map((e) => e.outerHTML));
  check(bad.length === 0, `unlabelled controls: ${bad.join(', ')}`);
}

/** Nothing wider than the viewport (phone widths). */
export async function fits(t, name) {
  const over = await t.page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  check(over <= 1, `${name}: the page is ${over}px wider than the viewport`);
}

/**
 * Every visible text meets WCAG AA contrast against the background it sits on (4.5:1, or 3:1
 * for large text), computed from the rendered colours.
 */
export async function contrast(t) {
  const bad = await t.page.evaluate(() => {
    const rgb = (c) => (c.match(/[\d.]+/g) || []).map(Number);
    const lum = ([r, g, b]) => {
      const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
      return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
    };
    const background = (el) => {
      for (let e = el; e; e = e.parentElement) {
        const c = rgb(getComputedStyle(e).backgroundColor);
        if (c.length === 3 || c[3] > 0) return c.slice(0, 3);
      }
      return [255, 255, 255];
    };
    const out = [];
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    for (let n = walker.nextNode(); n; n = walker.nextNode()) {
      const el = n.parentElement;
      if (!n.textContent.trim() || !el || !el.checkVisibility()) continue;
      const st = getComputedStyle(el);
      const [a, b] = [lum(rgb(st.color).slice(0, 3)), lum(background(el))];
      const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
      const size = parseFloat(st.fontSize);
      const large = size >= 24 || (size >= 18.66 && Number(st.fontWeight) >= 700);
      if (ratio < (large ? 3 : 4.5)) out.push(`"${n.textContent.trim().slice(0, 30)}" ${ratio.toFixed(2)}:1`);
    }
    return out;
  });
  check(bad.length === 0, `text below WCAG AA contrast: ${bad.join('; ')}`);
}

export async function shot(t, name) {
  await labelled(t);
  await contrast(t);
  t.shotCount += 1;
  const file = join(t.shots, `${String(t.shotCount).padStart(2, '0')}-${name}.png`);
  await t.page.screenshot({ path: file, fullPage: true });
  console.log(`screenshot ${file}`);
}

export async function goto(t, path) {
  await t.page.goto(`${t.base}${path}`);
  await t.page.waitForSelector('main h1');
}

/** Navigate with the UI's own links (no reload), then wait for the heading. */
export async function nav(t, name, heading) {
  await t.page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name, exact: true }).click();
  await t.page.getByRole('heading', { level: 1, name: heading }).waitFor();
  // keyboard and screen-reader users land on the new page's heading
  const focused = await t.page.evaluate(() => document.activeElement && document.activeElement.tagName);
  check(focused === 'H1', `focus after navigating to ${name}: ${focused}`);
}

export async function loginToken(t, token) {
  await goto(t, '/ui/login');
  await t.page.getByLabel('Method').selectOption('token');
  await t.page.getByLabel('Token', { exact: true }).fill(token);
  await t.page.getByRole('button', { name: 'Log in' }).click();
  await t.page.getByRole('heading', { level: 1, name: 'Secrets engines' }).waitFor();
}

export async function loginUserpass(t, user, password) {
  await goto(t, '/ui/login');
  await t.page.getByLabel('Method').selectOption('userpass');
  await t.page.getByLabel('Username', { exact: true }).fill(user);
  await t.page.getByLabel('Password', { exact: true }).fill(password);
  // keyboard: Enter in the password field submits
  await t.page.getByLabel('Password', { exact: true }).press('Enter');
  await t.page.getByRole('heading', { level: 1, name: 'Secrets engines' }).waitFor();
  // the user's own token must not show up in a URL either
  t.secrets.push(await t.page.evaluate(() => sessionStorage.getItem('strongroom.token')));
}

export async function logout(t) {
  await t.page.getByRole('button', { name: 'Log out' }).click();
  await t.page.getByRole('heading', { level: 1, name: 'Log in to Strongroom' }).waitFor();
  const stored = await t.page.evaluate(() => [sessionStorage.length, localStorage.length, document.cookie]);
  check(stored[0] === 0 && stored[1] === 0 && stored[2] === '', `storage after logout: ${stored}`);
}

export async function alertText(t) {
  const a = t.page.getByRole('alert').first();
  await a.waitFor();
  return a.innerText();
}

export async function finish(t) {
  await t.browser.close();
  if (t.problems.length) throw new Failure(t.problems.join('\n'));
  console.log(`ok: ${t.shotCount} screenshots, ${t.apiErrors} expected API refusals logged by chromium`);
}
