// The live list: events appear without a reload, a retry updates its row, pause holds what
// arrives, the URL's filter narrows the live feed, and a server restart is ridden out with
// nothing lost or doubled. All of it is the hydrated page's websocket: without wasm nothing
// here would move.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { envelope, launchBrowser, loggedInPage, sendHook, startHookscope } from './harness.mjs';

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

const rows = (page) => page.locator('tr.event-row');
const row = (page, id) => page.locator('tr.event-row', { hasText: id });

async function openLive(path = '/') {
  const { page, problems } = await loggedInPage(browser, server.baseUrl);
  await page.goto(`${server.baseUrl}${path}`);
  await page.locator('.connection.conn-live').waitFor({ timeout: 15_000 });
  return { page, problems };
}

test('an event posted after the page loaded appears, and its retry updates its row', async () => {
  const { page, problems } = await openLive();
  assert.equal(await rows(page).count(), 0);
  await sendHook(server.baseUrl, 'keldair', envelope('evt-live-1', 'applicant.hired'));
  await row(page, 'evt-live-1').waitFor();
  assert.match(await row(page, 'evt-live-1').getAttribute('class'), /fresh/, 'marked as new');

  await sendHook(server.baseUrl, 'keldair', envelope('evt-live-1', 'applicant.hired'));
  await page.locator('tr.event-row', { hasText: 'evt-live-1' }).locator('.delivery-count', { hasText: '2' }).waitFor();
  assert.equal(await row(page, 'evt-live-1').count(), 1, 'one row, two deliveries');

  // The row opens its event.
  await row(page, 'evt-live-1').getByRole('link').click();
  await page.waitForURL(/\/events\/\d+$/);
  await page.locator('pre.payload', { hasText: 'evt-live-1' }).waitFor();
  assert.deepEqual(problems, []);
});

test('pause holds what arrives behind a badge; resume shows each once', async () => {
  const { page } = await openLive();
  const before = await rows(page).count();
  await page.getByRole('button', { name: 'Pause' }).click();
  await sendHook(server.baseUrl, 'keldair', envelope('evt-paused-1', 'offer.accepted'));
  await sendHook(server.baseUrl, 'keldair', envelope('evt-paused-2', 'offer.accepted'));
  await page.locator('.badge.waiting', { hasText: '2 waiting' }).waitFor();
  assert.equal(await rows(page).count(), before, 'nothing moves while paused');

  await page.getByRole('button', { name: 'Resume' }).click();
  await row(page, 'evt-paused-2').waitFor();
  assert.equal(await row(page, 'evt-paused-1').count(), 1);
  assert.equal(await row(page, 'evt-paused-2').count(), 1);
  assert.equal(await rows(page).count(), before + 2);
  // The keyboard: p pauses again.
  await page.keyboard.press('p');
  await page.getByRole('button', { name: 'Resume' }).waitFor();
});

test('the filter in the URL narrows the live feed too', async () => {
  const { page } = await openLive('/?type=job.published');
  await sendHook(server.baseUrl, 'keldair', envelope('evt-filter-no', 'applicant.rejected'));
  await sendHook(server.baseUrl, 'keldair', envelope('evt-filter-yes', 'job.published'));
  await row(page, 'evt-filter-yes').waitFor();
  assert.equal(await row(page, 'evt-filter-no').count(), 0);
  assert.equal(await rows(page).count(), 1);
});

test('a server restart: reconnecting, then live again with what came meanwhile shown once', async () => {
  const { page } = await openLive();
  await server.restart(async () => {
    await page.locator('.connection.conn-reconnecting').waitFor({ timeout: 15_000 });
  });
  await sendHook(server.baseUrl, 'keldair', envelope('evt-restart-a', 'interview.scheduled'));
  await page.locator('.connection.conn-live').waitFor({ timeout: 30_000 });
  await row(page, 'evt-restart-a').waitFor({ timeout: 15_000 });
  await sendHook(server.baseUrl, 'keldair', envelope('evt-restart-b', 'interview.scheduled'));
  await row(page, 'evt-restart-b').waitFor();
  assert.equal(await row(page, 'evt-restart-a').count(), 1, 'shown once');
});

test('an open event page shows a new delivery of that event when it arrives', async () => {
  const { page } = await openLive();
  await sendHook(server.baseUrl, 'keldair', envelope('evt-page-1', 'offer.accepted'));
  await row(page, 'evt-page-1').getByRole('link').click();
  await page.waitForURL(/\/events\/\d+$/);
  await page.locator('dd.delivery-count', { hasText: '1' }).waitFor();
  await page.locator('li.delivery').first().waitFor();
  // KeldairHR retries. (The page follows from the cursor it was read at: even before its
  // stream is open, nothing is missed.)
  await sendHook(server.baseUrl, 'keldair', envelope('evt-page-1', 'offer.accepted'));
  await page.locator('dd.delivery-count', { hasText: '2' }).waitFor();
  assert.equal(await page.locator('li.delivery').count(), 2);
});

test('a connection gone silent (a laptop that slept) is noticed and resumed', { timeout: 180_000 }, async () => {
  const { page } = await openLive();
  // Frozen, the server keeps its sockets open but says nothing: no close ever reaches the page.
  server.freeze();
  try {
    await page.locator('.connection.conn-reconnecting').waitFor({ timeout: 120_000 });
  } finally {
    server.thaw();
  }
  await page.locator('.connection.conn-live').waitFor({ timeout: 30_000 });
  await sendHook(server.baseUrl, 'keldair', envelope('evt-after-sleep', 'offer.accepted'));
  await row(page, 'evt-after-sleep').waitFor();
});
