// Browser scenarios against a running `strongroom server`, started by
// crates/strongroom/tests/ui_browser.rs:  node run.mjs <scenario>
// Environment: UI_BASE (http(s)://host:port), UI_SHOTS (screenshot dir), UI_ROOT_TOKEN,
// UI_SHARES (unseal key shares, comma-separated: the sealed scenario), UI_TENANT_TOKEN (a
// demo tenant's token: the volumes scenario).
import { open, check, shot, goto, nav, loginToken, loginUserpass, logout, alertText, finish, fits, Failure } from './lib.mjs';

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Failure(`${k} is not set`);
  return v;
};

const PASSWORD = 'correct horse battery staple';
const POLICY = `path "ocs/data/*" {
  capabilities = ["create", "read", "update", "delete", "list"]
}
path "ocs/metadata/*" {
  capabilities = ["read", "list", "delete"]
}
`;

/** The article: root enables ocs, writes a policy, makes a user; the user sees only ocs. */
async function article(t, root) {
  await goto(t, '/');
  await t.page.getByRole('heading', { name: 'Log in to Strongroom' }).waitFor();
  check(new URL(t.page.url()).pathname.startsWith('/ui/'), `/ did not lead to /ui/: ${t.page.url()}`);
  await shot(t, 'login');
  // keyboard: focus starts on the page's heading and the next Tab enters the form
  check(await t.page.evaluate(() => document.activeElement.tagName) === 'H1', 'focus is not on the heading');
  await t.page.keyboard.press('Tab');
  const first = await t.page.evaluate(() => document.activeElement.labels[0].textContent);
  check(first.startsWith('Method'), `Tab from the heading reached ${first}`);
  await loginToken(t, root);
  await shot(t, 'engines-root');

  await t.page.getByLabel('Path').fill('ocs');
  await t.page.getByLabel('Type').selectOption('kv-v2');
  await t.page.getByRole('button', { name: 'Enable engine' }).click();
  await t.page.getByRole('heading', { level: 1, name: 'ocs/' }).waitFor();

  await nav(t, 'Policies', 'ACL policies');
  await t.page.getByLabel('Name').fill('ocs');
  await t.page.getByLabel('Policy (HCL)').fill('path "ocs/data/*" {\n  capabilities = ["read", "fly"]\n}\n');
  await t.page.getByRole('button', { name: 'Save policy' }).click();
  const parse = await alertText(t);
  check(/invalid capability "fly"/.test(parse), `policy parse error not shown: ${parse}`);
  const marked = await t.page.locator('ol.lines li.error').innerText();
  check(marked.includes('path "ocs/data/*"'), `parse error not marked at its line: ${marked}`);
  await shot(t, 'policy-parse-error');
  await t.page.getByLabel('Policy (HCL)').fill(POLICY);
  await t.page.getByRole('button', { name: 'Save policy' }).click();
  await t.page.getByRole('heading', { level: 1, name: 'Policy ocs' }).waitFor();
  await shot(t, 'policy');

  await nav(t, 'Auth methods', 'Auth methods');
  await t.page.getByRole('button', { name: 'Enable method' }).click();
  await t.page.getByRole('heading', { level: 1, name: 'Userpass users at userpass/' }).waitFor();
  await t.page.getByLabel('Username', { exact: true }).fill('ocs-operator');
  await t.page.getByLabel('Password', { exact: true }).fill(PASSWORD);
  await t.page.getByLabel('Policies (comma-separated)').fill('ocs');
  await t.page.getByRole('button', { name: 'Save user' }).click();
  await t.page.getByRole('cell', { name: 'ocs-operator', exact: true }).waitFor();
  await shot(t, 'userpass-users');

  await nav(t, 'Tokens', 'Tokens');
  await t.page.getByLabel('Policies (comma-separated)').fill('ocs');
  await t.page.getByLabel('TTL').fill('1h');
  await t.page.getByRole('button', { name: 'Create token' }).click();
  await t.page.getByText('Token created.').waitFor();
  const accessor = await t.page.locator('dl.kv').last().locator('dd code').nth(1).innerText();
  check(/^[A-Za-z0-9.]+$/.test(accessor), `accessor: ${accessor}`);
  await shot(t, 'tokens');
  await t.page.getByLabel('Accessor', { exact: true }).fill(accessor);
  await t.page.getByRole('button', { name: 'Revoke' }).click();
  await t.page.getByText('Revoked.').waitFor();

  // KV version 1: write, read, delete
  await nav(t, 'Secrets engines', 'Secrets engines');
  await t.page.getByLabel('Path').fill('legacy');
  await t.page.getByLabel('Type').selectOption('kv');
  await t.page.getByRole('button', { name: 'Enable engine' }).click();
  await t.page.getByRole('heading', { level: 1, name: 'legacy/' }).waitFor();
  await t.page.getByLabel('Path of the new secret').fill('app/config');
  await t.page.getByLabel('Data (a JSON object)').fill('{"url": "https://db.example"}');
  await t.page.getByRole('button', { name: 'Save secret' }).click();
  await t.page.getByRole('button', { name: 'Show url' }).click();
  await t.page.getByText('https://db.example', { exact: true }).waitFor();
  check(!(await t.page.getByText('Versions and metadata').count()), 'KV v1 has no versions');
  await shot(t, 'kv1-secret');
  await t.page.getByRole('button', { name: 'Delete secret' }).click();
  await t.page.getByRole('heading', { level: 1, name: 'legacy/app/' }).waitFor();
  await t.page.getByText('Nothing here.').waitFor();
  await nav(t, 'Audit devices', 'Audit devices');
  await shot(t, 'audit');
  await nav(t, 'Status', 'Server status');
  await shot(t, 'status');
  await logout(t);

  await loginUserpass(t, 'ocs-operator', PASSWORD);
  const engines = await t.page.locator('main table tbody').innerText();
  check(/ocs\//.test(engines), `the user does not see ocs: ${engines}`);
  check(!/secret\//.test(engines) && !/transit/.test(engines), `the user sees more than ocs: ${engines}`);
  await shot(t, 'engines-tenant');
  await t.page.getByRole('link', { name: 'ocs/' }).click();
  await t.page.getByLabel('Path of the new secret').fill('pvc-0001');
  await t.page.getByLabel('Data (a JSON object)').fill('{"encryptionPassphrase": "volume key one"}');
  await t.page.getByRole('button', { name: 'Save secret' }).click();
  await t.page.getByRole('heading', { level: 1, name: 'ocs/pvc-0001' }).waitFor();
  check(!(await t.page.getByText('volume key one').isVisible()), 'values are hidden until asked for');
  await t.page.getByRole('button', { name: 'Show encryptionPassphrase' }).click();
  await t.page.getByText('volume key one', { exact: true }).waitFor();
  check(!(await t.page.getByLabel('Data (a JSON object)').isVisible()), 'the edit form is folded');
  await t.page.getByText('Edit', { exact: true }).click();
  await t.page.getByLabel('Data (a JSON object)').fill('{"encryptionPassphrase": "volume key two"}');
  await t.page.getByRole('button', { name: 'Save new version' }).click();
  await t.page.getByRole('button', { name: 'Show encryptionPassphrase' }).click();
  await t.page.getByText('volume key two', { exact: true }).waitFor();
  await t.page.getByRole('link', { name: 'Version 1' }).waitFor();
  await shot(t, 'kv-secret-versions');
  await t.page.getByRole('link', { name: 'Version 1' }).click();
  await t.page.getByRole('heading', { level: 1, name: 'ocs/pvc-0001 (version 1)' }).waitFor();
  await t.page.getByRole('button', { name: 'Show encryptionPassphrase' }).click();
  await t.page.getByText('volume key one', { exact: true }).waitFor();

  await nav(t, 'Policies', 'ACL policies');
  const denied = await alertText(t);
  check(/permission denied/.test(denied) && /403/.test(denied), `denial not shown: ${denied}`);
  await shot(t, 'denied');
  await logout(t);
}

/** The volumes of demo-like tenants, then a transit key rotated and its volumes gone stale. */
async function volumes(t, root) {
  // a page opened without a session asks for a login, then shows that page
  await goto(t, '/ui/volumes');
  await t.page.getByRole('heading', { level: 1, name: 'Log in to Strongroom' }).waitFor();
  await t.page.getByLabel('Token', { exact: true }).fill(root);
  await t.page.getByRole('button', { name: 'Log in' }).click();
  await t.page.getByRole('heading', { level: 1, name: 'Volumes' }).waitFor();
  check(new URL(t.page.url()).pathname === '/ui/volumes', `after login: ${t.page.url()}`);
  const table = t.page.locator('main table tbody');
  await table.getByRole('cell', { name: 'alice-db' }).waitFor();
  const rows = await table.innerText();
  check(/alice-db\s+envelope\s+transit\/keys\/tenant-alice\s+1 of 1\s+.*current/.test(rows), `alice-db row: ${rows}`);
  check(/bob-logs\s+kv v2\s+secret\/strongroom\/bob\/bob-logs\s+1\s+.*active/.test(rows), `bob-logs row: ${rows}`);
  await shot(t, 'volumes');

  await goto(t, '/ui/secrets/transit/');
  await t.page.getByLabel('Key name').fill('made-in-the-ui');
  await t.page.getByRole('button', { name: 'Create key' }).click();
  await t.page.getByRole('heading', { level: 1, name: 'Transit key made-in-the-ui' }).waitFor();
  await t.page.getByRole('cell', { name: 'Version 1' }).waitFor();
  await goto(t, '/ui/secrets/transit/');
  await t.page.getByRole('link', { name: 'tenant-alice' }).waitFor();
  await shot(t, 'transit-keys');

  await goto(t, '/ui/secrets/transit/keys/tenant-alice');
  await t.page.getByRole('heading', { level: 1, name: 'Transit key tenant-alice' }).waitFor();
  await shot(t, 'transit-key');
  await t.page.getByRole('button', { name: 'Rotate key' }).click();
  await t.page.getByRole('cell', { name: 'Version 2' }).waitFor();
  const wrapped = await t.page.getByRole('table', { name: 'Volumes wrapped by tenant-alice' }).innerText();
  check(/alice-db\s+1\s+.*stale/.test(wrapped), `after rotation alice-db should be stale: ${wrapped}`);
  await shot(t, 'transit-rotated');
  await t.page.getByLabel('Minimum decryption version').fill('2');
  await t.page.getByRole('button', { name: 'Save' }).click();
  await t.page.getByText('undecryptable').first().waitFor();
  const after = await t.page.getByRole('table', { name: 'Volumes wrapped by tenant-alice' }).innerText();
  check(/alice-db\s+1\s+.*undecryptable/.test(after), `below min_decryption_version: ${after}`);
  await shot(t, 'transit-min-decryption');

  await nav(t, 'Volumes', 'Volumes');
  await t.page.getByText('undecryptable').first().waitFor();
  await shot(t, 'volumes-after-rotation');
  await logout(t);

  // a tenant sees its own volumes only (its policy names its key; listing keys is refused)
  await loginToken(t, env('UI_TENANT_TOKEN'));
  t.secrets.push(env('UI_TENANT_TOKEN'));
  await nav(t, 'Volumes', 'Volumes');
  await table.getByRole('cell', { name: 'alice-db' }).waitFor();
  const own = await table.innerText();
  check(!/bob/.test(own), `alice sees bob's volumes: ${own}`);
  check(!(await t.page.getByRole('alert').count()), 'alice gets an error on her volumes page');
  await shot(t, 'volumes-tenant');
  await nav(t, 'Policies', 'ACL policies');
  check(/permission denied/.test(await alertText(t)), 'alice may not list policies');
}

/** A phone-sized screen: the menu folds, nothing overflows, pages still work. */
async function phone(t, root) {
  await goto(t, '/ui/login');
  await fits(t, 'login');
  await loginToken(t, root);
  await fits(t, 'engines');
  const nav = t.page.getByRole('navigation', { name: 'Main' });
  check(!(await nav.isVisible()), 'the menu should be folded on a phone');
  await t.page.getByRole('button', { name: 'Menu' }).click();
  await nav.getByRole('link', { name: 'Volumes' }).click();
  await t.page.getByRole('heading', { level: 1, name: 'Volumes' }).waitFor();
  await fits(t, 'volumes');
  await shot(t, 'phone-volumes');
  await goto(t, '/ui/secrets/transit/keys/tenant-bob');
  await fits(t, 'transit key');
  await shot(t, 'phone-transit-key');
}

/** A sealed server: the login page says so; key shares typed into the status page unseal it. */
async function sealed(t) {
  const shares = env('UI_SHARES').split(',');
  await goto(t, '/ui/');
  const msg = await alertText(t);
  check(/sealed/.test(msg), `login page should say the server is sealed: ${msg}`);
  await shot(t, 'sealed-login');
  await t.page.getByRole('link', { name: 'Unseal it' }).click();
  await t.page.getByRole('heading', { level: 1, name: 'Server status' }).waitFor();
  await shot(t, 'sealed-status');
  // a wrong share is refused with the server's message
  await t.page.getByLabel('Unseal key share').fill('not-a-key-share');
  await t.page.getByRole('button', { name: 'Submit key share' }).click();
  const refused = await alertText(t);
  check(/400/.test(refused), `a bad share should be refused: ${refused}`);
  for (const [i, s] of shares.entries()) {
    await t.page.getByLabel('Unseal key share').fill(s);
    await t.page.getByRole('button', { name: 'Submit key share' }).click();
    if (i + 1 < shares.length) await t.page.getByText(`${i + 1} of ${shares.length} given`).waitFor();
  }
  await t.page.getByText('Unseal progress').waitFor();
  await t.page.locator('dd', { hasText: /^no$/ }).first().waitFor();
  await shot(t, 'unsealed-status');
  await loginToken(t, env('UI_ROOT_TOKEN'));
  await shot(t, 'unsealed-engines');
  await nav(t, 'Audit devices', 'Audit devices');
  const devices = await t.page.locator('main table tbody').innerText();
  check(/main\/\s+file/.test(devices) && /audit\.log/.test(devices), `audit devices: ${devices}`);
  await shot(t, 'audit-devices');
}

const scenarios = { article, volumes, phone, sealed };

async function main() {
  const name = process.argv[2];
  const run = scenarios[name];
  if (!run) throw new Failure(`unknown scenario ${name}`);
  const root = process.env.UI_ROOT_TOKEN || '';
  const t = await open({
    base: env('UI_BASE'),
    shots: `${env('UI_SHOTS')}/${name}`,
    secrets: [root, PASSWORD, process.env.UI_TENANT_TOKEN, ...(process.env.UI_SHARES || '').split(',')],
    viewport: name === 'phone' ? { width: 375, height: 740 } : undefined,
    ignoreHTTPSErrors: true,
  });
  try {
    await run(t, root);
  } catch (e) {
    await t.page.screenshot({ path: `${t.shots}/failure.png`, fullPage: true }).catch(() => {});
    await t.browser.close();
    throw e;
  }
  await finish(t);
}

main().catch((e) => {
  console.error(`FAILED: ${e.message}`);
  process.exit(1);
});
