// The dashboard of `eventbus serve`, in headless Chromium.
//
// Starts the `eventbus` binary (EVENTBUS_BIN; by default debug/eventbus in $CARGO_TARGET_DIR or
// target/) on a free loopback port with a fresh data directory, a random admin API token and a
// random viewer token (by its SHA-256 in the data directory's config file), opens the dashboard,
// refuses a wrong token, signs in, drives core banking through the API (a customer, an account, a
// deposit, a test event whose text is HTML, a bank transaction that triggers a recommendation),
// and checks that the page shows them live. Drives the console (produce, browse, export,
// re-produce, group offsets) and the dead-letters panel: a malformed command produced from the
// form becomes a dead letter, which is found by topic, shown with its original and history,
// redriven (rejected again: its redrive count goes to 1), discarded (resolved, the discard in its
// history naming the admin caller), and a second one redriven with "Redrive all matching". Saves a
// screenshot (DASHBOARD_SCREENSHOT, default target/dashboard.png), signs out, signs in as the
// viewer and checks that the customer's name and email are masked and that a redrive is refused
// with a message naming the operator role, then stops the server with SIGTERM.
// CHROMIUM names another browser than /usr/bin/chromium.
//
// Every wait is bounded; the script exits non-zero on the first failure.
//
//   (cd tests/browser && npm ci) && node tests/browser/dashboard.test.mjs

import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
// Paths from the environment are relative to the working directory; the defaults to the repository.
const BIN = process.env.EVENTBUS_BIN
  ? resolve(process.env.EVENTBUS_BIN)
  : resolve(ROOT, process.env.CARGO_TARGET_DIR || 'target', 'debug/eventbus');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const SCREENSHOT = process.env.DASHBOARD_SCREENSHOT
  ? resolve(process.env.DASHBOARD_SCREENSHOT)
  : resolve(ROOT, 'target/dashboard.png');

/** The longest the server may take to be ready. */
const READY_MS = 60_000;
/** The longest one step of the test may wait for the page. */
const STEP_MS = 20_000;
/** The longest the server may take to stop after SIGTERM. */
const STOP_MS = 20_000;
/** The longest a dead letter may take to be written, or handled again after a redrive. */
const LETTER_MS = 30_000;
/** The longest the whole test may take. */
const TOTAL_MS = 300_000;

const started = Date.now();
const since = () => `${((Date.now() - started) / 1000).toFixed(1)} s`;
const log = (message) => console.log(`[${since()}] ${message}`);

class Failure extends Error {}

function check(condition, message) {
  if (!condition) {
    throw new Failure(message);
  }
}

function freePort() {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolvePort(port));
    });
  });
}

/** The server, with the tail of its output for the failure report. */
function startServer(dataDir, port, token) {
  const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('EVENTBUS_')));
  env.EVENTBUS_API_TOKEN = token;
  const child = spawn(BIN, ['--data-dir', dataDir, 'serve', '--listen', `127.0.0.1:${port}`, '--dev'], {
    cwd: dataDir,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output = [];
  const keep = (chunk) => {
    output.push(...chunk.toString().split('\n').filter(Boolean));
    output.splice(0, Math.max(0, output.length - 200));
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  const exited = new Promise((resolveExit) => {
    child.on('exit', (code, signal) => resolveExit({ code, signal }));
    child.on('error', (error) => resolveExit({ code: null, signal: null, error }));
  });
  return { child, output, exited, running: true };
}

async function waitReady(server, base) {
  const deadline = Date.now() + READY_MS;
  let exit = null;
  server.exited.then((result) => { exit = result; });
  while (Date.now() < deadline) {
    if (exit) {
      throw new Failure(`the server exited before it was ready: ${JSON.stringify(exit)} ${exit.error || ''}`);
    }
    try {
      const response = await fetch(`${base}/ready`, { signal: AbortSignal.timeout(2000) });
      if (response.ok) {
        return;
      }
    } catch (_) {
      // Not listening yet.
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Failure(`the server was not ready within ${READY_MS / 1000} s`);
}

async function stopServer(server) {
  if (!server.running) {
    return;
  }
  server.running = false;
  server.child.kill('SIGTERM');
  const timeout = new Promise((r) => setTimeout(() => r(null), STOP_MS).unref());
  const exit = await Promise.race([server.exited, timeout]);
  if (!exit) {
    server.child.kill('SIGKILL');
    throw new Failure(`the server did not stop within ${STOP_MS / 1000} s of SIGTERM`);
  }
  check(exit.code === 0, `the server stopped with ${JSON.stringify(exit)}`);
}

async function main() {
  const dataDir = await mkdtemp(join(tmpdir(), 'eventbus-dashboard-'));
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const token = randomBytes(24).toString('hex');
  const viewerToken = randomBytes(32).toString('hex');
  const viewerHash = createHash('sha256').update(viewerToken).digest('hex');
  // The data directory's own config file, read when no other is named.
  await writeFile(join(dataDir, 'eventbus.toml'),
    `[[api.tokens]]\nname = "vera"\nrole = "viewer"\nsha256 = "${viewerHash}"\n`);
  const suffix = randomBytes(4).toString('hex');
  const ids = {
    customer: `cust_dash_${suffix}`,
    account: `acc_dash_${suffix}`,
    probe: `xss_${suffix}`,
    external: `ext_${suffix}`,
  };
  log(`starting ${BIN} on ${base} (data in ${dataDir})`);
  const server = startServer(dataDir, port, token);
  let browser = null;
  const watchdog = setTimeout(() => {
    console.error(`FAIL: the test took longer than ${TOTAL_MS / 1000} s`);
    server.child.kill('SIGKILL');
    process.exit(1);
  }, TOTAL_MS);
  watchdog.unref();

  try {
    await waitReady(server, base);
    log('server ready');

    const call = async (method, path, body) => {
      const response = await fetch(`${base}${path}`, {
        method,
        headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(STEP_MS),
      });
      const answer = await response.json();
      check(response.ok, `${method} ${path}: ${response.status} ${JSON.stringify(answer)}`);
      return answer;
    };
    const command = async (kind, data) => {
      const answer = await call('POST', `/commands/${kind}?wait=true&timeout_ms=15000`, data);
      check(answer.status === 'accepted', `${kind} ${data.action}: ${JSON.stringify(answer)}`);
    };

    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, timeout: STEP_MS });
    const context = await browser.newContext({ viewport: { width: 1400, height: 1000 } });
    const page = await context.newPage();
    page.setDefaultTimeout(STEP_MS);
    page.setDefaultNavigationTimeout(STEP_MS);
    const problems = [];
    page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
    page.on('console', (message) => {
      const text = message.text();
      // The wrong token, and the reset of a live group, are refused on purpose; Chromium logs
      // the refused requests.
      const refused = /Failed to load resource: the server responded with a status of 40[139]/.test(text);
      if (message.type() === 'error' && !refused) {
        problems.push(`console error: ${text}`);
      }
    });

    const response = await page.goto(`${base}/`);
    check(response.status() === 200, `GET / answered ${response.status()}`);
    const policy = response.headers()['content-security-policy'] || '';
    check(policy.includes("default-src 'self'"), `Content-Security-Policy: ${policy}`);
    await page.getByTestId('token-input').waitFor({ state: 'visible' });
    check(await page.getByTestId('dashboard').isHidden(), 'the dashboard is hidden before sign-in');
    log('page loaded, token asked for');

    await page.getByTestId('token-input').fill('not-the-token');
    await page.getByTestId('token-submit').click();
    const message = page.getByTestId('auth-message');
    await message.waitFor({ state: 'visible' });
    const refusal = await message.textContent();
    check(/refused/i.test(refusal) && refusal.includes('403'), `the wrong token's message: ${refusal}`);
    check(await page.getByTestId('dashboard').isHidden(), 'a wrong token does not open the dashboard');
    log(`wrong token refused: "${refusal}"`);

    await page.getByTestId('token-input').fill(token);
    await page.getByTestId('token-submit').click();
    await page.getByTestId('dashboard').waitFor({ state: 'visible' });
    check(await message.isHidden(), 'the refusal is gone after signing in');
    await page.waitForFunction(() => document.getElementById('bus-running').textContent === 'running');
    await page.waitForFunction(() => document.getElementById('stream-state').textContent === 'live');
    const backend = await page.getByTestId('bus-backend').textContent();
    check(backend.includes('embedded'), `backend: ${backend}`);
    check(!page.url().includes(token), 'the token is not in the URL');
    const stored = await page.evaluate(() => sessionStorage.getItem('eventbus.dashboard.token'));
    check(stored === token, 'the token is kept in sessionStorage');
    log(`signed in; bus running on ${backend}; live stream connected`);

    await command('customers', {
      action: 'create', customer_id: ids.customer, first_name: 'Ada', last_name: 'Lovelace',
      email: `ada.${suffix}@example.com`,
    });
    await command('customers', {
      action: 'open_account', customer_id: ids.customer, account_type: 'checking', currency: 'USD',
      account_id: ids.account,
    });
    await command('transactions', { action: 'deposit', account_id: ids.account, amount: '125.50', currency: 'USD' });
    const html = `<img src=x onerror="window.__injected=1"><script>window.__injected=2</script>`;
    await call('POST', '/kafka/publish-test', {
      topic: 'nexum.test.events', event_type: 'test_event', entity_type: 'test', entity_id: ids.probe,
      data: { message: html },
    });
    // A 2,000.00 credit on a new account is a savings opportunity for the recommender.
    await call('POST', '/kafka/publish-test', {
      topic: 'bank.transactions', event_type: 'bank_transaction_recorded', entity_type: 'bank_transaction',
      entity_id: `btx_${suffix}`,
      data: { account_id: ids.external, direction: 'credit', amount: '2000.00', currency: 'USD', merchant: 'Payroll' },
    });
    log('events generated: customer, account, deposit, test event, bank transaction');

    const event = (type, entity) => page.locator(
      `[data-testid="event"][data-event-type="${type}"][data-entity-id="${entity}"]`,
    );
    await event('customer_created', ids.customer).waitFor();
    const opened = event('account_created', ids.account);
    await opened.waitFor();
    await page.waitForFunction((account) => [...document.querySelectorAll(
      '[data-testid="event"][data-event-type="transaction_posted"] [data-testid="event-json"]',
    )].some((json) => json.textContent.includes(account)), ids.account, { timeout: STEP_MS });
    log('customer_created, account_created and transaction_posted are in the live list');

    await opened.locator('summary').click();
    const json = opened.getByTestId('event-json');
    await json.waitFor({ state: 'visible' });
    const shown = JSON.parse(await json.textContent());
    check(shown.event.entity_id === ids.account && shown.topic === 'nexum.accounts.created',
      `the expanded event: ${JSON.stringify(shown)}`);
    log('an event expands to its JSON');

    const probe = event('test_event', ids.probe);
    await probe.waitFor();
    const probeJson = JSON.parse(await probe.getByTestId('event-json').textContent());
    check(probeJson.event.data.message === html, `event text is shown as text: ${JSON.stringify(probeJson)}`);
    check(await page.evaluate(() => window.__injected === undefined), 'event text is never run as HTML');
    check(await page.locator('#event-list img, #event-list script').count() === 0, 'no element from event text');
    log('HTML in event data is shown as text and not run');

    const balance = page.locator(`[data-testid="account"][data-account-id="${ids.account}"] [data-testid="balance"]`);
    await balance.waitFor();
    await page.waitForFunction(
      (account) => document.querySelector(`[data-testid="account"][data-account-id="${account}"] [data-testid="balance"]`)
        ?.dataset.balance === '125.50',
      ids.account,
      { timeout: STEP_MS },
    );
    log(`balance shown: ${await balance.textContent()}`);

    await page.locator('[data-testid="group"][data-group="nexum-command-handler"] [data-testid="group-lag"]').waitFor();
    log('consumer groups shown');

    await page.locator('[data-testid="recommendation"]', { hasText: ids.external }).waitFor();
    log('recommendation shown');

    await page.locator('[data-testid="rate-topic"][data-topic="nexum.accounts.created"]').waitFor();
    const inked = await page.evaluate(() => {
      const canvas = document.getElementById('rate-chart');
      const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
      let count = 0;
      for (let i = 3; i < pixels.length; i += 4) {
        count += pixels[i] > 0 ? 1 : 0;
      }
      return { count, lines: Number(canvas.dataset.lines) };
    });
    check(inked.count > 0 && inked.lines > 0, `the rate chart is drawn: ${JSON.stringify(inked)}`);
    const total = Number(await page.getByTestId('bus-total-events').getAttribute('data-value'));
    check(total > 0, `total events: ${total}`);
    log(`rate chart drawn (${inked.lines} lines); ${total} events on the bus`);

    // ------------------------------------------------------------ the console
    const consoleTopic = 'nexum.test.events';
    const keys = { produced: `key_ui_${suffix}`, other: `key_api_${suffix}` };
    const accounts = { produced: `acc_ui_${suffix}`, other: `acc_api_${suffix}` };
    const chooseTopic = async (id) => {
      await page.waitForFunction(([select, topic]) => [...document.getElementById(select).options]
        .some((option) => option.value === topic), [id, consoleTopic], { timeout: STEP_MS });
      await page.getByTestId(id).selectOption(consoleTopic);
    };

    // Produce a message from the form, and another one through the API
    await chooseTopic('produce-topic');
    await page.getByTestId('produce-key').fill(keys.produced);
    await page.getByTestId('produce-event').fill(JSON.stringify({
      event_type: 'console_test', entity_type: 'test', entity_id: `ent_${suffix}`,
      data: { account_id: accounts.produced, amount: '1.00' },
    }));
    await page.getByTestId('produce-submit').click();
    const result = page.getByTestId('produce-result');
    await page.waitForFunction(() => document.getElementById('produce-result').dataset.offset !== undefined);
    const produced = await result.evaluate((element) => ({ ...element.dataset }));
    check(/^[0-9]+$/.test(produced.offset) && /^[0-9]+$/.test(produced.partition), `produced: ${JSON.stringify(produced)}`);
    check(await page.getByTestId('produce-error').isHidden(), 'the produce form reports no error');
    await call('POST', `/topics/${consoleTopic}/messages`, {
      key: keys.other,
      event: { event_type: 'console_test', entity_type: 'test', entity_id: `ent2_${suffix}`, data: { account_id: accounts.other } },
    });
    log(`produced from the form to partition ${produced.partition}, offset ${produced.offset}; one more through the API`);

    // Browse by key: the message produced from the form, and only it
    await chooseTopic('browse-topic');
    await page.getByTestId('browse-key').fill(keys.produced);
    await page.getByTestId('browse-submit').click();
    const records = (key) => page.locator(`[data-testid="record"][data-key="${key}"]`);
    await records(keys.produced).first().waitFor();
    check(await page.locator('[data-testid="record"]').count() === 1, 'browsing by key shows that key only');
    const found = await records(keys.produced).first().evaluate((element) => ({ ...element.dataset }));
    check(found.partition === produced.partition && found.offset === produced.offset && found.eventId === produced.eventId,
      `the browsed message is the produced one: ${JSON.stringify(found)} vs ${JSON.stringify(produced)}`);
    log('browsed by key: the produced message is there');

    // Browse by a data field
    await page.getByTestId('browse-key').fill('');
    await page.getByTestId('browse-where').fill(`data.account_id=${accounts.other}`);
    await page.getByTestId('browse-submit').click();
    await records(keys.other).first().waitFor();
    check(await page.locator('[data-testid="record"]').count() === 1, 'browsing by a data field shows its matches only');
    await records(keys.other).first().locator('summary').click();
    const browsedJson = JSON.parse(await records(keys.other).first().getByTestId('record-json').textContent());
    check(browsedJson.event.data.account_id === accounts.other, `the browsed JSON: ${JSON.stringify(browsedJson)}`);
    log('browsed by data.account_id: only the matching message');

    // Export the same query as JSON lines
    const [download] = await Promise.all([
      page.waitForEvent('download', { timeout: STEP_MS }),
      page.getByTestId('browse-export').click(),
    ]);
    check(download.suggestedFilename() === `${consoleTopic}.jsonl`, `export file name: ${download.suggestedFilename()}`);
    const exported = await readFile(await download.path(), 'utf8');
    const lines = exported.split('\n').filter(Boolean).map((line) => JSON.parse(line));
    check(lines.length === 1 && lines[0].key === keys.other && lines[0].event.data.account_id === accounts.other,
      `the exported lines: ${exported}`);
    log('exported as JSON lines: one line, the matching message');

    // Re-produce the produced message: a new message with the same key and a new event id
    await page.getByTestId('browse-where').fill('');
    await page.getByTestId('browse-key').fill(keys.produced);
    await page.getByTestId('browse-submit').click();
    await records(keys.produced).first().waitFor();
    await records(keys.produced).first().locator('summary').click();
    await records(keys.produced).first().getByTestId('reproduce').click();
    await page.waitForFunction((key) => document.querySelectorAll(`[data-testid="record"][data-key="${key}"]`).length === 2,
      keys.produced, { timeout: STEP_MS });
    const copies = await records(keys.produced).evaluateAll((elements) => elements.map((e) => ({ ...e.dataset })));
    check(copies[0].eventId !== copies[1].eventId && copies[0].partition === copies[1].partition
      && Number(copies[0].offset) > Number(copies[1].offset), `the re-produced message: ${JSON.stringify(copies)}`);
    log(`re-produced: offset ${copies[0].offset}, new event id`);

    // The groups table: every group with its lag; a group reset through the API to the start is behind
    const offline = `console-${suffix}`;
    const partitionRowOf = (group, p) => page.locator(
      `[data-testid="group-partition"][data-group="${group}"][data-partition="${p}"]`,
    );
    await call('POST', `/consumer-groups/${offline}/offsets`, { topic: consoleTopic, to: 'earliest' });
    const groupLag = page.locator(`[data-testid="group"][data-group="${offline}"] [data-testid="group-lag"]`);
    await groupLag.waitFor();
    await page.waitForFunction((group) => Number(document.querySelector(
      `[data-testid="group"][data-group="${group}"] [data-testid="group-lag"]`,
    )?.dataset.lag) > 0, offline, { timeout: STEP_MS });
    await page.locator('[data-testid="group-partition"][data-group="nexum-command-handler"]').first()
      .waitFor({ state: 'attached' });
    await page.locator(`[data-testid="group-partitions"][data-group="${offline}"] > summary`).click();
    await partitionRowOf(offline, produced.partition).waitFor();
    await page.waitForTimeout(3500); // a refresh of the table keeps the partitions open
    check(await partitionRowOf(offline, produced.partition).isVisible(), 'the partitions stay open across refreshes');
    log(`groups table: ${offline} lags by ${await groupLag.getAttribute('data-lag')}`);

    // Reset one partition of that group to its end from the form: only that partition moves
    const partitionRow = (p) => partitionRowOf(offline, p);
    const before = await page.locator(`[data-testid="group-partition"][data-group="${offline}"]`).evaluateAll(
      (rows) => rows.map((row) => ({ partition: row.dataset.partition,
        offset: row.querySelector('[data-testid="group-offset"]').dataset.offset })),
    );
    await partitionRow(produced.partition).getByTestId('reset-pick').click();
    check(await page.getByTestId('reset-partition').inputValue() === produced.partition, 'the pick fills the form');
    await page.getByTestId('reset-to').selectOption('latest');
    await page.getByTestId('reset-submit').click();
    await page.waitForFunction(([group, p]) => {
      const row = document.querySelector(`[data-testid="group-partition"][data-group="${group}"][data-partition="${p}"]`);
      return row && row.querySelector('[data-testid="partition-lag"]').dataset.lag === '0'
        && Number(row.querySelector('[data-testid="group-offset"]').dataset.offset) > 0;
    }, [offline, produced.partition], { timeout: STEP_MS });
    const after = await page.locator(`[data-testid="group-partition"][data-group="${offline}"]`).evaluateAll(
      (rows) => rows.map((row) => ({ partition: row.dataset.partition,
        offset: row.querySelector('[data-testid="group-offset"]').dataset.offset })),
    );
    for (const row of before.filter((r) => r.partition !== produced.partition)) {
      check(after.some((r) => r.partition === row.partition && r.offset === row.offset),
        `partition ${row.partition} did not move: ${JSON.stringify({ before, after })}`);
    }
    check(await page.getByTestId('reset-result').textContent() !== '', 'the reset reports its offsets');
    log(`reset partition ${produced.partition} of ${offline} to its end; the other partitions kept their offsets`);

    // A reset of a group this process consumes in is refused, and says why
    await page.getByTestId('reset-group').fill('nexum-command-handler');
    await page.getByTestId('reset-topic').fill('nexum.commands.transactions');
    await page.getByTestId('reset-partition').fill('0');
    await page.getByTestId('reset-to').selectOption('earliest');
    await page.getByTestId('reset-submit').click();
    await page.getByTestId('reset-error').waitFor({ state: 'visible' });
    const refusedReset = await page.getByTestId('reset-error').textContent();
    check(refusedReset.includes('409') && refusedReset.includes('group_active'), `the refused reset: ${refusedReset}`);
    log(`a reset of a live group is refused: "${refusedReset}"`);

    // ------------------------------------------------------------ dead letters
    // A deposit whose amount is a JSON number, not a decimal string: malformed, so the command
    // handler rejects it for good and the bus dead-letters it (a well-formed command the bank
    // refuses, such as a negative amount, is answered with a rejection event instead).
    const commandTopic = 'nexum.commands.transactions';
    const commandGroup = 'nexum-command-handler';
    const dlqCommands = { first: `cmd_dlq_${suffix}`, second: `cmd_dlq2_${suffix}` };
    const malformed = (eventId, account) => ({
      event_id: eventId, event_type: 'transaction_command', entity_type: 'transaction', entity_id: account,
      data: { action: 'deposit', account_id: account, amount: -5, currency: 'USD' },
    });
    await page.waitForFunction((topic) => [...document.getElementById('produce-topic').options]
      .some((option) => option.value === topic), commandTopic, { timeout: STEP_MS });
    await page.getByTestId('produce-topic').selectOption(commandTopic);
    await page.getByTestId('produce-key').fill(`acc_dlq_${suffix}`);
    await page.getByTestId('produce-event').fill(JSON.stringify(malformed(dlqCommands.first, `acc_dlq_${suffix}`)));
    await page.getByTestId('produce-submit').click();
    await page.waitForFunction((id) => document.getElementById('produce-result').dataset.eventId === id,
      dlqCommands.first, { timeout: STEP_MS });
    log(`produced the malformed command ${dlqCommands.first} to ${commandTopic} from the form`);

    const letterRow = (eventId) => page.locator(`[data-testid="dead-letter"][data-event-id="${eventId}"]`);
    /** Waits, bounded, until the row of letter `id` shows `want` (its data- attributes). */
    const letterWhere = (id, want) => page.waitForFunction(([letter, expected]) => {
      const row = [...document.querySelectorAll('[data-testid="dead-letter"]')].find((r) => r.dataset.id === letter);
      return Boolean(row) && Object.entries(expected).every(([name, value]) => row.dataset[name] === value);
    }, [id, want], { timeout: LETTER_MS, polling: 250 });
    await page.getByTestId('dlq-topic').fill(commandTopic);
    await page.getByTestId('dlq-group').fill('');
    await page.getByTestId('dlq-error-text').fill('');
    await page.getByTestId('dlq-state').selectOption('open');
    await page.getByTestId('dlq-submit').click();
    const first = letterRow(dlqCommands.first);
    await first.waitFor({ timeout: LETTER_MS }); // written once the subscription has handled it; the panel refreshes
    const letter = await first.evaluate((row) => ({ ...row.dataset,
      error: row.querySelector('[data-testid="dlq-letter-error"]').textContent }));
    check(letter.state === 'failed' && letter.group === commandGroup && letter.topic === commandTopic
      && letter.dlqTopic === `${commandTopic}.dlq` && letter.redriveCount === '0',
      `the dead letter: ${JSON.stringify(letter)}`);
    check(letter.error.startsWith('rejected: ') && letter.error.includes('deposit'), `the letter's error: ${letter.error}`);
    const listed = await page.locator('[data-testid="dead-letter"]').evaluateAll(
      (rows) => rows.map((row) => [row.dataset.topic, row.dataset.dlqTopic]),
    );
    check(listed.every(([topic, dlq]) => topic === commandTopic || dlq === `${commandTopic}.dlq`),
      `filtered by topic: ${JSON.stringify(listed)}`);
    check(await first.getByTestId('dlq-redrive').isVisible() && await first.getByTestId('dlq-discard').isVisible(),
      'a failed letter offers Redrive and Discard');
    log(`dead letter ${letter.id} listed: ${letter.error}`);

    // Show: its original and its history
    await first.getByTestId('dlq-show').click();
    const detail = page.locator(`[data-testid="dead-letter-detail"][data-id="${letter.id}"]`);
    const entries = (event) => detail.locator(`[data-testid="dlq-history-entry"][data-event="${event}"]`);
    await entries('dead_lettered').first().waitFor();
    const original = JSON.parse(await detail.getByTestId('dlq-original').textContent());
    check(original.event_id === dlqCommands.first && original.data.amount === -5, `the original: ${JSON.stringify(original)}`);
    check(await first.getByTestId('dlq-show').textContent() === 'Hide', 'Show turns into Hide');
    log('the letter expands to its original and its history (dead_lettered)');

    // Redrive: handled again, rejected again, so it comes back failed with one redrive
    await first.getByTestId('dlq-redrive').click();
    const outcome = (id, requested) => page.locator(
      `[data-testid="dlq-outcome-item"][data-id="${id}"][data-requested="${requested}"]`,
    );
    await outcome(letter.id, 'true').waitFor();
    await letterWhere(letter.id, { redriveCount: '1', state: 'failed' });
    await page.waitForFunction((id) => {
      const rows = [...document.querySelectorAll('[data-testid="dead-letter-detail"]')].filter((r) => r.dataset.id === id);
      const events = rows.flatMap((r) => [...r.querySelectorAll('[data-testid="dlq-history-entry"]')].map((e) => e.dataset.event));
      return events.filter((e) => e === 'dead_lettered').length === 2 && events.includes('dead_letter_redrive_requested');
    }, letter.id, { timeout: STEP_MS, polling: 250 });
    const redriver = await entries('dead_letter_redrive_requested').first().getAttribute('data-actor');
    check(redriver.endsWith('(admin)'), `the redrive's actor: ${redriver}`);
    check(await detail.isVisible(), 'the expanded letter stays open across refreshes');
    log(`redriven by ${redriver}: rejected again, redrive count 1, history has both dead_lettered records`);

    // Discard: resolved, with the discard in its history naming the admin caller
    await first.getByTestId('dlq-discard').click();
    await page.waitForFunction((id) => [...document.querySelectorAll('[data-testid="dlq-outcome-item"]')]
      .some((item) => item.dataset.id === id && item.dataset.requested === 'true'
        && document.getElementById('dlq-outcome-summary').dataset.action === 'discard'), letter.id, { timeout: STEP_MS });
    await page.getByTestId('dlq-state').selectOption('resolved');
    await letterWhere(letter.id, { state: 'resolved' });
    const resolvedRow = page.locator(`[data-testid="dead-letter"][data-id="${letter.id}"]`);
    const stateText = await resolvedRow.getByTestId('dlq-state-cell').textContent();
    check(stateText === 'resolved (discarded)', `the resolved letter's state: ${stateText}`);
    check(await resolvedRow.getByTestId('dlq-redrive').count() === 0 && await resolvedRow.getByTestId('dlq-discard').count() === 0,
      'a resolved letter offers neither Redrive nor Discard');
    await entries('dead_letter_discard_requested').first().waitFor();
    const discarder = await entries('dead_letter_discard_requested').first().getAttribute('data-actor');
    check(discarder.endsWith('(admin)'), `the discard's actor: ${discarder}`);
    const discardText = await entries('dead_letter_discard_requested').first().textContent();
    check(discardText.includes('(admin)') && discardText.includes('127.0.0.1'), `the discard's history entry: ${discardText}`);
    log(`discarded by ${discarder}: resolved (discarded), shown with state filter "resolved"`);

    // A second letter, made through the API; "Redrive all matching" asks first, naming the count
    await call('POST', `/topics/${commandTopic}/messages`, {
      key: `acc_dlq2_${suffix}`, event: malformed(dlqCommands.second, `acc_dlq2_${suffix}`),
    });
    await page.getByTestId('dlq-group').fill(commandGroup);
    await page.getByTestId('dlq-error-text').fill('INVALID `DEPOSIT`');
    await page.getByTestId('dlq-state').selectOption('open');
    const second = letterRow(dlqCommands.second);
    await second.waitFor({ timeout: LETTER_MS });
    const secondId = await second.getAttribute('data-id');
    await page.waitForFunction(() => document.getElementById('dlq-count').dataset.matching === '1', null, { timeout: STEP_MS });
    check(await page.locator('[data-testid="dead-letter"]').count() === 1, 'only the open letter is listed');
    const asked = [];
    page.once('dialog', (dialog) => {
      asked.push(dialog.message());
      dialog.accept().catch(() => {});
    });
    await page.getByTestId('dlq-redrive-all').click();
    await outcome(secondId, 'true').waitFor();
    check(asked.length === 1 && asked[0].startsWith('Redrive all 1 dead letter matching'), `the confirmation: ${JSON.stringify(asked)}`);
    await letterWhere(secondId, { redriveCount: '1', state: 'failed' });
    log(`"Redrive all matching" asked "${asked[0]}" and redrove ${dlqCommands.second}`);

    // "Discard all matching", declined at its confirmation: nothing is posted
    page.once('dialog', (dialog) => {
      asked.push(dialog.message());
      dialog.dismiss().catch(() => {});
    });
    await page.getByTestId('dlq-discard-all').click();
    await page.waitForFunction(() => document.getElementById('dlq-redrive-all').disabled === false, null, { timeout: STEP_MS });
    check(asked.length === 2 && asked[1].startsWith('Discard all 1 dead letter matching'), `the confirmation: ${JSON.stringify(asked)}`);
    check(await page.getByTestId('dlq-outcome-summary').getAttribute('data-action') === 'redrive', 'a declined discard posts nothing');
    await letterWhere(secondId, { state: 'failed' });
    log('"Discard all matching" declined: nothing discarded');

    await mkdir(dirname(SCREENSHOT), { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    log(`screenshot: ${SCREENSHOT}`);

    await page.getByTestId('forget-token').click();
    await page.getByTestId('token-input').waitFor({ state: 'visible' });
    check(await page.evaluate(() => sessionStorage.getItem('eventbus.dashboard.token')) === null, 'token forgotten');
    check(await page.locator('[data-testid="event"], [data-testid="account"], [data-testid="record"], '
      + '[data-testid="dead-letter"]').count() === 0, 'customer data is cleared on sign-out');
    log('forget token: back to the form, data cleared');

    await page.getByTestId('token-input').fill(viewerToken);
    await page.getByTestId('token-submit').click();
    await page.getByTestId('dashboard').waitFor({ state: 'visible' });
    const created = event('customer_created', ids.customer);
    await created.waitFor();
    await created.locator('summary').click();
    const masked = JSON.parse(await created.getByTestId('event-json').textContent());
    const data = masked.event.data;
    check(data.first_name === 'A***' && data.last_name === 'L***' && data.email === `a***@example.com`,
      `a viewer sees the customer masked: ${JSON.stringify(data)}`);
    const text = await page.locator('body').textContent();
    check(!text.includes('Lovelace') && !text.includes(`ada.${suffix}@`), 'no name or email in clear for a viewer');
    await balance.waitFor();
    log(`signed in as a viewer: the customer shows as ${data.first_name} ${data.last_name} <${data.email}>`);

    // A viewer sees the dead letters but may not redrive them: the refusal names the role
    await page.getByTestId('dlq-topic').fill(commandTopic);
    await page.getByTestId('dlq-group').fill('');
    await page.getByTestId('dlq-error-text').fill('');
    await page.getByTestId('dlq-state').selectOption('open');
    await page.getByTestId('dlq-submit').click();
    const viewed = letterRow(dlqCommands.second);
    await viewed.waitFor();
    await viewed.getByTestId('dlq-redrive').click();
    const refusedRedrive = page.getByTestId('dlq-action-error');
    await refusedRedrive.waitFor({ state: 'visible' });
    const refusedText = await refusedRedrive.textContent();
    check(refusedText.includes('operator') && refusedText.includes('403'), `the viewer's refused redrive: ${refusedText}`);
    check(await page.getByTestId('dashboard').isVisible(), 'a refused redrive does not sign the viewer out');
    check(await page.getByTestId('dlq-outcome').isHidden(), 'a refused redrive reports no results');
    log(`a viewer's redrive is refused: "${refusedText}"`);
    await page.getByTestId('forget-token').click();
    await page.getByTestId('token-input').waitFor({ state: 'visible' });

    check(problems.length === 0, `the page reported problems:\n  ${problems.join('\n  ')}`);
    await browser.close();
    browser = null;
    await stopServer(server);
    log('server stopped on SIGTERM');
    console.log(`PASS dashboard browser test (${since()})`);
  } catch (error) {
    console.error(`FAIL: ${error instanceof Failure ? error.message : error.stack || error}`);
    console.error(`--- server output (last lines) ---\n${server.output.join('\n')}`);
    process.exitCode = 1;
  } finally {
    clearTimeout(watchdog);
    if (browser) {
      await browser.close().catch(() => {});
    }
    if (server.running) {
      server.running = false;
      server.child.kill('SIGTERM');
      await Promise.race([server.exited, new Promise((r) => setTimeout(r, STOP_MS).unref())]);
      server.child.kill('SIGKILL');
    }
    await rm(dataDir, { recursive: true, force: true });
  }
}

await main();
