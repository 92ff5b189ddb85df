// The filter bar: every type seen with its count, applied in place (the URL follows, so a
// reload or a link restores it), narrowing both the list and its live feed; Clear undoes it.
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

test('the filter bar narrows the list and the live feed, and lives in the URL', async () => {
  for (const [id, type] of [['evt-f-1', 'applicant.hired'], ['evt-f-2', 'offer.accepted'], ['evt-f-3', 'offer.accepted']]) {
    await sendHook(server.baseUrl, 'keldair', envelope(id, type));
  }
  const { page, problems } = await loggedInPage(browser, server.baseUrl);
  await page.locator('.connection.conn-live').waitFor({ timeout: 15_000 });
  await page.locator('.filter-bar .matching', { hasText: '3 events match' }).waitFor();
  const offers = page.locator('label.type-option', { hasText: 'offer.accepted' });
  assert.match(await offers.textContent(), /offer\.accepted\s*2/);

  await offers.locator('input').check();
  await page.getByRole('button', { name: 'Apply' }).click();
  await page.waitForURL(/type=offer\.accepted/);
  await page.locator('.filter-bar .matching', { hasText: '2 events match' }).waitFor();
  assert.equal(await page.locator('tr.event-row').count(), 2);

  // The live feed follows the same filter.
  await page.locator('.connection.conn-live').waitFor({ timeout: 15_000 });
  await sendHook(server.baseUrl, 'keldair', envelope('evt-f-4', 'applicant.hired'));
  await sendHook(server.baseUrl, 'keldair', envelope('evt-f-5', 'offer.accepted'));
  await page.locator('tr.event-row', { hasText: 'evt-f-5' }).waitFor();
  assert.equal(await page.locator('tr.event-row', { hasText: 'evt-f-4' }).count(), 0);
  // The bar's counts follow what arrives.
  await page.locator('.filter-bar .matching', { hasText: '3 events match' }).waitFor();
  assert.match(await page.locator('label.type-option', { hasText: 'offer.accepted' }).textContent(), /offer\.accepted\s*3/);

  // A reload keeps it; Clear undoes it.
  await page.reload();
  assert.equal(await page.locator('label.type-option', { hasText: 'offer.accepted' }).locator('input').isChecked(), true);
  await page.getByRole('link', { name: 'Clear' }).click();
  await page.locator('.filter-bar .matching', { hasText: '5 events match' }).waitFor();
  assert.deepEqual(problems, []);
});
