// web_ui.browser.mjs - the web UI of `llmos serve --accounts` in headless Chromium
// (playwright-core, Debian's chromium): a wrong passphrase refused, logging in, a streamed
// chat answer, the memory inspector, processes and kill, the audit page with its chain check,
// settings, logging out; a second account that sees nothing of the first's; every login and
// failure in the server's audit log. Run by run_web.sh, which starts the server; screenshots
// of each page go to $LLMOS_SCREENSHOTS.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { chromium } from 'playwright-core';

const url = process.env.LLMOS_URL;
const shots = process.env.LLMOS_SCREENSHOTS;
let browser;

before(async () => {
  browser = await chromium.launch({
    executablePath: process.env.LLMOS_CHROMIUM,
    headless: true,
    args: ['--no-sandbox'],
  });
});

after(async () => { await browser?.close(); });

// A fresh browser profile: its own cookies. The certificate is the server's self-signed one for
// localhost (run_web.sh); TLS itself, with certificate checks, is tested in test_web_auth.c.
async function newPage() {
  const ctx = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1100, height: 760 } });
  const page = await ctx.newPage();
  const problems = [];
  // Chromium logs every 4xx answer as a console error; the statuses are asserted here instead
  page.on('console', (m) => {
    if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) problems.push(m.text());
  });
  page.on('pageerror', (e) => problems.push(String(e)));
  page.on('request', (r) => {
    const u = r.url();
    if (!u.startsWith(url) && !u.startsWith(url.replace('127.0.0.1', 'localhost')))
      problems.push('a request elsewhere: ' + u);
  });
  return { ctx, page, problems };
}

async function shot(page, name) {
  await page.screenshot({ path: path.join(shots, name + '.png'), fullPage: true });
}

async function login(page, account, passphrase, base = url) {
  await page.goto(base);
  await page.getByTestId('login-form').waitFor();
  await page.fill('#account', account);
  await page.fill('#passphrase', passphrase);
  await page.click('button[type=submit]');
}

test('a wrong passphrase is refused, and the right one logs in', async () => {
  const { ctx, page, problems } = await newPage();
  await login(page, 'alice', 'not-alices-passphrase');
  await assert.doesNotReject(page.getByTestId('login-error').getByText('wrong account name or passphrase').waitFor());
  await shot(page, '01-login-refused');
  assert.equal((await ctx.cookies()).length, 0);
  await login(page, 'alice', 'alice-passphrase');
  await page.getByTestId('who').getByText('alice').waitFor();
  const cookies = await ctx.cookies();
  assert.equal(cookies.length, 1);
  assert.equal(cookies[0].name, '__Host-llmos_session');
  assert.equal(cookies[0].httpOnly, true);
  assert.equal(cookies[0].secure, true);
  assert.equal(cookies[0].sameSite, 'Strict');
  // the page's script cannot read the session cookie
  assert.equal(await page.evaluate(() => document.cookie), '');
  assert.deepEqual(problems, []);
  await ctx.close();
});

test('alice chats, looks into memory, kills a process, checks the audit log and logs out', async () => {
  const { ctx, page, problems } = await newPage();
  await login(page, 'alice', 'alice-passphrase');
  await page.getByTestId('view-chat').waitFor();

  // the answer streams: count the changes to the chat while it arrives
  await page.evaluate(() => {
    window.__changes = 0;
    new MutationObserver((list) => { window.__changes += list.length; })
      .observe(document.querySelector('[data-testid=chat-log]'), { subtree: true, childList: true, characterData: true });
  });
  await page.fill('[data-testid=chat-input]', 'Once upon a time');
  await page.click('[data-testid=chat-send]');
  await page.getByTestId('turn-end').waitFor({ timeout: 60000 });
  const answer = await page.getByTestId('msg-assistant').first().textContent();
  assert.ok(answer.length > 0, 'the assistant answered');
  assert.ok(await page.evaluate(() => window.__changes) > 3, 'the answer arrived in pieces');
  await shot(page, '02-chat');

  await page.getByTestId('tab-memory').click();
  await page.getByTestId('core-blocks').getByText('persona', { exact: false }).waitFor();
  await page.getByTestId('recall-results').getByText('Once upon a time').first().waitFor();
  await page.fill('[data-testid=recall-query]', 'upon');
  await page.click('[data-testid=recall-search]');
  await page.getByTestId('recall-results').getByText('Once upon a time').first().waitFor();
  await shot(page, '03-memory');

  // a second process, idle, to kill (the chat's has ended its turn: done)
  const session = await (await ctx.request.get(url + 'auth/session')).json();
  const made = await ctx.request.post(url + 'v1/processes', { data: {}, headers: { 'X-CSRF-Token': session.csrf } });
  assert.equal(made.status(), 201);
  const pid = (await made.json()).pid;
  await page.getByTestId('tab-processes').click();
  await page.getByTestId(`process-${pid}`).getByText('idle').waitFor();
  await page.click(`[data-testid=kill-${pid}]`);
  await page.getByTestId(`process-${pid}`).getByText('killed').waitFor();
  await shot(page, '04-processes');

  await page.getByTestId('tab-audit').click();
  await page.getByTestId('audit-records').getByText('login').first().waitFor();
  await page.click('[data-testid=audit-verify]');
  await page.getByTestId('audit-verdict').getByText('chain intact').waitFor();
  await shot(page, '05-audit');

  await page.getByTestId('tab-apps').click();
  await page.getByTestId('apps-none').waitFor(); /* a fresh llmos home: none installed */
  await shot(page, '06-apps');

  await page.getByTestId('tab-settings').click();
  await page.getByTestId('settings').getByText('alice').waitFor();
  await shot(page, '06-settings');

  const cookie = (await ctx.cookies())[0];
  await page.click('[data-testid=logout]');
  await page.getByTestId('login-form').waitFor();
  // the old cookie, replayed, no longer opens anything
  const ctx2 = await browser.newContext({ ignoreHTTPSErrors: true });
  await ctx2.addCookies([cookie]);
  const r = await ctx2.request.get(url + 'auth/session');
  assert.equal(r.status(), 401);
  await ctx2.close();
  assert.deepEqual(problems, []);
  await ctx.close();
});

test('bob sees nothing of alice', async () => {
  const { ctx, page, problems } = await newPage();
  await login(page, 'bob', 'bob-passphrase');
  await page.getByTestId('who').getByText('bob').waitFor();
  await page.getByTestId('tab-memory').click();
  await page.getByTestId('recall-results').getByText('nothing found').waitFor();
  await page.fill('[data-testid=recall-query]', 'upon');
  await page.click('[data-testid=recall-search]');
  await page.getByTestId('recall-results').getByText('nothing found').waitFor();
  await page.getByTestId('tab-processes').click();
  await page.getByTestId('processes').waitFor();
  await page.waitForTimeout(300);
  assert.equal(await page.locator('[data-testid^=process-]').count(), 0);
  // alice's process by its number: not found for bob
  const r = await ctx.request.get(url + 'v1/processes/1');
  assert.equal(r.status(), 404);
  await shot(page, '07-second-user');
  assert.deepEqual(problems, []);
  await ctx.close();
});

test('a passkey: added with the passphrase, then a login with it; its assertion replayed is refused', async () => {
  // passkeys belong to a host name (the RP ID "localhost"), not to an address
  const lurl = url.replace('127.0.0.1', 'localhost');
  const { ctx, page, problems } = await newPage();
  const cdp = await ctx.newCDPSession(page);
  await cdp.send('WebAuthn.enable');
  await cdp.send('WebAuthn.addVirtualAuthenticator', {
    options: {
      protocol: 'ctap2', transport: 'internal', hasResidentKey: true, hasUserVerification: true,
      isUserVerified: true, hasPrf: true, automaticPresenceSimulation: true,
    },
  });
  await login(page, 'alice', 'alice-passphrase', lurl);
  await page.getByTestId('who').getByText('alice').waitFor();
  await page.getByTestId('tab-settings').click();
  await page.fill('[data-testid=passkey-passphrase]', 'alice-passphrase');
  await page.click('[data-testid=passkey-add]');
  await page.getByTestId('passkey-result').getByText('Passkey added').waitFor();
  await shot(page, '08-passkey-added');
  await page.click('[data-testid=logout]');
  await page.getByTestId('login-form').waitFor();

  let sent = null;
  page.on('request', (r) => { if (r.url().endsWith('/auth/passkey/login')) sent = r.postData(); });
  await page.fill('#account', 'alice');
  await page.click('[data-testid=login-passkey]');
  await page.getByTestId('who').getByText('alice').waitFor();
  await page.getByTestId('tab-memory').click();
  // the store opened with the passkey's copy of its key: alice's memory is there
  await page.getByTestId('recall-results').getByText('Once upon a time').first().waitFor();
  await shot(page, '09-passkey-login');
  assert.ok(sent, 'the page sent an assertion');

  // the same assertion again, from another client: refused (its challenge was used)
  const other = await browser.newContext({ ignoreHTTPSErrors: true });
  const r = await other.request.post(lurl + 'auth/passkey/login', {
    data: JSON.parse(sent), headers: { 'Content-Type': 'application/json' },
  });
  assert.equal(r.status(), 401);
  assert.equal((await other.cookies()).length, 0);
  await other.close();
  assert.deepEqual(problems, []);
  await ctx.close();
});

test('a tool call and its result are shown (a scripted model that calls the calculator)', async () => {
  const turl = process.env.LLMOS_TOOL_URL;
  const { ctx, page, problems } = await newPage();
  await login(page, 'carol', 'carol-passphrase', turl);
  await page.getByTestId('view-chat').waitFor();
  await page.fill('[data-testid=chat-input]', 'What is six times seven?');
  await page.click('[data-testid=chat-send]');
  await page.getByTestId('turn-end').waitFor({ timeout: 60000 });
  const call = await page.getByTestId('tool-call').first().textContent();
  assert.match(call, /calculator\(\{"expression":"6\*7"\}\)/);
  const result = await page.getByTestId('tool-result').first().textContent();
  assert.match(result, /tool result/i);
  assert.match(result, /42/);
  await page.getByTestId('msg-assistant').getByText('The calculator says').waitFor();
  await shot(page, '10-tool-call');

  // An untrusted result (a tool that read outside content: READ or EXEC, which these sessions
  // do not grant, so the answer is stood in for here): marked as such, and its text, markup
  // included, shown as text, never run
  const ev = (name, data) => 'event: ' + name + '\ndata: ' + JSON.stringify(data) + '\n\n';
  await page.route('**/v1/processes/*/messages', (route) => route.fulfill({
    status: 200,
    contentType: 'text/event-stream',
    body: ev('tool_call', { pid: 1, name: 'read_file', call_id: 'c2', arguments: '{"path":"mail.txt"}' }) +
      ev('tool_result', { pid: 1, name: 'read_file', call_id: 'c2', origin: 'untrusted', is_error: false,
        text: '<img src=x onerror="window.__pwned=1">stored as $VAR1' }) +
      ev('end', { pid: 1, state: 'done', reason: 'answered', used: { tokens: 0, tool_calls: 1, wall_s: 0 } }),
  }));
  await page.fill('[data-testid=chat-input]', 'Read my mail');
  await page.click('[data-testid=chat-send]');
  await page.locator('[data-testid=turn-end]').nth(1).waitFor();
  const untrusted = page.locator('[data-testid=tool-result].untrusted');
  assert.equal(await untrusted.count(), 1);
  assert.match(await untrusted.textContent(), /untrusted result/);
  assert.match(await untrusted.textContent(), /<img src=x/);
  assert.equal(await page.locator('[data-testid=chat-log] img').count(), 0);
  assert.equal(await page.evaluate(() => window.__pwned), undefined);
  await page.unroute('**/v1/processes/*/messages');
  await shot(page, '11-untrusted-result');
  assert.deepEqual(problems.filter((p) => !p.includes(new URL(turl).host)), []);
  await ctx.close();
});

test('the server audited the logins, the failure and the logout', async () => {
  const records = [];
  for (let from = 1; ;) {
    const r = await fetch(url + 'v1/audit?limit=1000&from=' + from, {
      headers: { Authorization: 'Bearer ' + process.env.LLMOS_ADMIN_KEY },
    });
    assert.equal(r.status, 200);
    const page = await r.json();
    records.push(...page.records);
    if (!page.next) break;
    from = page.next;
  }
  const auth = records.filter((r) => r.kind === 'auth').map((r) => r.payload);
  const has = (event, account) => auth.some((p) => p.event === event && p.account === account);
  assert.ok(has('login.failed', 'alice'), 'the wrong passphrase is audited');
  assert.ok(has('login', 'alice'));
  assert.ok(has('logout', 'alice'));
  assert.ok(has('login', 'bob'));
  assert.ok(has('passkey.add', 'alice'), 'the passkey added is audited');
  assert.ok(auth.some((p) => p.event === 'login' && p.account === 'alice' && p.detail.startsWith('passkey')),
    'the login with the passkey is audited');
  assert.ok(auth.some((p) => p.event === 'login.failed' && p.account === 'alice' && p.detail.includes('challenge')),
    'the replayed assertion is refused and audited');
  const v = await (await fetch(url + 'v1/audit/verify', {
    headers: { Authorization: 'Bearer ' + process.env.LLMOS_ADMIN_KEY },
  })).json();
  assert.equal(v.ok, true);
});
