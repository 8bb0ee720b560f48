// Drives the IDE in Debian's headless Chromium against a running stations-api, as a person
// would: open the page, type a query, press run, read the result; then a mutation the API
// refuses; then a subscription that shows a change made by another client. Started by the Rust
// test api/tests/api/ide.rs, which owns the server and its database; it exits non-zero with the
// list of everything that went wrong.
//
//   node e2e/ide.e2e.mjs --url http://127.0.0.1:PORT/graphql --out DIR --expect "Name A,Name B"

import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';
import { untilLive } from '../../tests/clients/common.mjs';

const { values: options } = parseArgs({
  options: {
    url: { type: 'string' },
    out: { type: 'string' },
    expect: { type: 'string', default: '' },
    chromium: { type: 'string', default: process.env.CHROMIUM ?? '/usr/bin/chromium' },
  },
});
if (!options.url || !options.out) {
  console.error('usage: ide.e2e.mjs --url URL --out DIR [--expect "name,name"]');
  process.exit(2);
}
const pageUrl = new URL(options.url);
const expectedNames = options.expect.split(',').filter(Boolean);
const problems = [];
const requests = [];

mkdirSync(options.out, { recursive: true });
const profile = mkdtempSync(join(tmpdir(), 'stations-ide-chromium-'));
// The machine has no internet: background networking would only flood refused connections.
const context = await chromium.launchPersistentContext(profile, {
  executablePath: options.chromium,
  headless: true,
  args: [
    '--no-sandbox',
    '--disable-gpu',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
  ],
  viewport: { width: 1400, height: 900 },
});

try {
  context.on('request', (request) => requests.push(request.url()));
  context.on('response', (response) => {
    if (response.status() >= 400) problems.push(`HTTP ${response.status()} for ${response.url()}`);
  });
  context.on('requestfailed', (request) =>
    problems.push(`request failed: ${request.url()} (${request.failure()?.errorText})`),
  );
  const page = context.pages()[0] ?? (await context.newPage());
  page.on('console', (message) => {
    // A failed load is reported with its URL by the response listener above.
    if (message.type() === 'error' && !message.text().startsWith('Failed to load resource')) {
      problems.push(`console error: ${message.text().slice(0, 300)}`);
    }
  });
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  page.on('websocket', (socket) => requests.push(socket.url()));

  // 1. The page loads, with every request answered by this server.
  const response = await page.goto(pageUrl.href, { waitUntil: 'networkidle' });
  if (response?.status() !== 200) problems.push(`GET ${pageUrl.href} answered ${response?.status()}`);
  const queryEditor = page.locator('.graphiql-query-editor .monaco-editor').first();
  await queryEditor.waitFor({ state: 'visible', timeout: 30_000 });
  const firstTab = await editorText(page, queryEditor, (text) => text.includes('stations(first: 10'));
  if (!firstTab.includes('stations(first: 10')) {
    problems.push(`the default tab does not hold the example query:\n${firstTab}`);
  }

  // The docs explorer reads the schema by introspection.
  await page.getByRole('button', { name: 'Show Documentation Explorer' }).click();
  const docs = page.locator('.graphiql-doc-explorer-content').first();
  await docs.getByText('Query', { exact: true }).first().click({ timeout: 15_000 })
    .catch(() => problems.push('the docs explorer does not list the Query type'));
  await docs.getByText('stations', { exact: true }).first().waitFor({ timeout: 15_000 })
    .catch(() => problems.push('the docs explorer does not show the stations field'));

  // 2. A query typed by hand, run with the button, answered in the result pane.
  await replaceQuery(
    page,
    queryEditor,
    '{ stations(first: 20, orderBy: { field: NAME }) { totalCount edges { node { code name lat lng } } } }',
  );
  await page.getByRole('button', { name: /^Prettify query/ }).click();
  await queryEditor.click();
  await page.keyboard.press('ControlOrMeta+Home');
  await page.locator('.graphiql-execute-button').click();
  const result = await responseText(page, (text) => expectedNames.every((name) => text.includes(name)));
  for (const name of expectedNames) {
    if (!result.includes(name)) problems.push(`the result pane lacks station ${name}:\n${result}`);
  }
  // 4. A picture of the IDE for people to look at.
  await page.screenshot({ path: join(options.out, 'graphiql.png') });

  // 3. A mutation the API refuses: the error and its code show in the result pane.
  await replaceQuery(
    page,
    queryEditor,
    'mutation { createStation(input: { code: "E2E", name: "Too far north", lat: 91, lng: 0 }) { id } }',
  );
  await page.locator('.graphiql-execute-button').click();
  const refusal = await responseText(page, (text) => text.includes('BAD_USER_INPUT'));
  for (const fact of ['BAD_USER_INPUT', 'input.lat']) {
    if (!refusal.includes(fact)) problems.push(`the refused mutation's result lacks ${fact}:\n${refusal}`);
  }

  await page.screenshot({ path: join(options.out, 'graphiql-refusal.png') });

  // 5. A subscription over the page's own WebSocket: running, it shows the change a mutation
  // sent by another client causes.
  await replaceQuery(
    page,
    queryEditor,
    'subscription { stationChanged { kind station { code name } } }',
  );
  await page.locator('.graphiql-execute-button').click();
  await untilLive(pageUrl.href, 1);
  const mutation = await fetch(pageUrl.href, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      query: 'mutation { createStation(input: { code: "E2ELIVE", name: "Seen live", lat: 1, lng: 2 }) { id } }',
    }),
  });
  if (!mutation.ok) problems.push(`the mutation that should show live answered ${mutation.status}`);
  const live = await responseText(page, (text) => text.includes('E2ELIVE'));
  for (const fact of ['CREATED', 'E2ELIVE', 'Seen live']) {
    if (!live.includes(fact)) problems.push(`the subscription's result lacks ${fact}:\n${live}`);
  }
  if (!requests.some((url) => url.startsWith(pageUrl.origin.replace('http:', 'ws:')))) {
    problems.push('the subscription did not use a WebSocket to this server');
  }
  await page.screenshot({ path: join(options.out, 'graphiql-subscription.png') });

  const sameServer = (url) =>
    new URL(url).host === pageUrl.host && ['http:', 'ws:'].includes(new URL(url).protocol);
  const foreign = requests.filter((url) => !sameServer(url));
  for (const url of foreign) problems.push(`request to another origin: ${url}`);
  if (!requests.some((url) => url.includes('/graphql/assets/') && url.endsWith('.js'))) {
    problems.push('no script was loaded from /graphql/assets/');
  }
} catch (error) {
  problems.push(`the browser session failed: ${error.stack ?? error}`);
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}

if (problems.length > 0) {
  console.error(`${problems.length} problem(s) in the IDE:\n- ${problems.join('\n- ')}`);
  process.exit(1);
}
console.log(`IDE checked: ${requests.length} requests, all to ${pageUrl.origin}; screenshot in ${options.out}`);

/** Replaces the query editor's text. insertText types no keys, so Monaco adds no brackets. */
async function replaceQuery(page, editor, text) {
  await editor.click();
  await page.keyboard.press('ControlOrMeta+A');
  await page.keyboard.press('Delete');
  await page.keyboard.insertText(text);
  // GraphiQL re-reads the operation name from the editor after a short debounce; running
  // before it would send the previous query's operation name.
  await page.waitForTimeout(1_000);
}

/** The result pane's text once `ready` accepts it, or whatever it shows after 15 s. */
async function responseText(page, ready) {
  return editorText(page, page.locator('.graphiql-response').first(), ready);
}

/** A Monaco editor's visible text once `ready` accepts it, or whatever it shows after 15 s. */
async function editorText(page, editor, ready) {
  const lines = editor.locator('.view-lines').first();
  const deadline = Date.now() + 15_000;
  let text = '';
  while (Date.now() < deadline) {
    text = (await lines.innerText().catch(() => '')).replace(/\u00a0/g, ' ');
    if (ready(text)) return text;
    await page.waitForTimeout(200);
  }
  return text;
}
