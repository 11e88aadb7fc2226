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

export async function shot(t, name) {
  await labelled(t);
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
