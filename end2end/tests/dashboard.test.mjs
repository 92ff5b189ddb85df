// A user's first session: log in, see the empty state, send a KeldairHR event, find it in the
// list, open it and unfold a delivery's headers. Unfolding is done by the wasm the page
// hydrates with, so this fails if hydration does not happen.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { TOKEN, launchBrowser, sample, sendHook, startHookscope } from './harness.mjs';

let server;
let browser;

before(async () => {
  server = await startHookscope();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

test('log in, receive an event, open it and unfold its headers', async () => {
  const page = await browser.newPage();
  const problems = [];
  page.on('pageerror', (e) => problems.push(e.message));
  page.on('console', (m) => m.type() === 'error' && problems.push(m.text()));

  await page.goto(server.baseUrl);
  assert.match(page.url(), /\/login$/, 'an anonymous visitor is sent to the login page');
  await page.fill('#token', 'wrong-token-000');
  await page.click('section.login button[type=submit]');
  await page.getByRole('alert').waitFor();
  await page.fill('#token', TOKEN);
  await page.click('section.login button[type=submit]');
  await page.getByText('No events yet').waitFor();
  const ingestUrl = await page.locator('code.ingest-url').textContent();
  assert.equal(ingestUrl, `${server.baseUrl}/hooks/keldair`);

  const sent = await sendHook(server.baseUrl, 'keldair', sample('applicant_hired'));
  assert.equal(sent.status, 200);
  assert.ok(sent.json.deliveryId);

  await page.reload();
  const row = page.locator('tr.event-row', { hasText: 'applicant.hired' });
  await row.waitFor();
  assert.match(await row.textContent(), /1a2b3c4d-5e6f-4a1b-8c2d-3e4f5a6b7c8d/);
  assert.match(await row.textContent(), /keldair/);

  await row.getByRole('link', { name: 'applicant.hired' }).click();
  await page.waitForURL(/\/events\/\d+$/);
  await page.locator('pre.payload', { hasText: '"firstName": "Amara"' }).waitFor();

  // Only the hydrated page can unfold the headers.
  const headers = page.locator('table.header-table').first();
  assert.equal(await headers.isVisible(), false);
  await page.getByRole('button', { name: /Show headers/ }).first().click();
  await headers.waitFor({ state: 'visible', timeout: 10_000 });
  assert.match(await headers.textContent(), /x-e2e\s*yes/);
  assert.deepEqual(problems, [], 'the page ran without errors');
});
