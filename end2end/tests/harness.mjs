// Starts the real Hookscope binary on a free port with a fresh SQLite file, and Debian's
// Chromium through playwright-core. Used by every end-to-end test.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const TOKEN = 'e2e-token-0123456789';

/**
 * Starts `target/release/hookscope` (or $HOOKSCOPE_BIN); resolves once it prints its address.
 * `restart()` stops it and starts it again on the same address and database.
 */
export async function startHookscope() {
  const dir = mkdtempSync(join(tmpdir(), 'hookscope-e2e-'));
  const bin = process.env.HOOKSCOPE_BIN ?? join(ROOT, 'target', 'release', 'hookscope');
  const run = (listen) => {
    const child = spawn(bin, [
      'serve', '--listen', listen, '--database-url', `sqlite://${join(dir, 'e2e.db')}`, '--token', TOKEN,
    ], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
    const baseUrl = new Promise((resolve, reject) => {
      let out = '';
      child.stdout.on('data', (chunk) => {
        out += chunk;
        const match = out.match(/listening on (http:\/\/[\d.:]+)/);
        if (match) resolve(match[1]);
      });
      child.on('exit', (code) => reject(new Error(`hookscope exited early (${code}): ${out}`)));
    });
    return { child, baseUrl };
  };
  const stopChild = async (child) => {
    child.kill('SIGTERM');
    await new Promise((resolve) => child.once('exit', resolve));
  };
  let current = run('127.0.0.1:0');
  const baseUrl = await current.baseUrl;
  return {
    baseUrl,
    async restart(whileDown = async () => {}) {
      await stopChild(current.child);
      await whileDown();
      current = run(baseUrl.replace('http://', ''));
      await current.baseUrl;
    },
    /** Freezes the server (SIGSTOP): its connections stay open but go silent. */
    freeze() { current.child.kill('SIGSTOP'); },
    thaw() { current.child.kill('SIGCONT'); },
    async stop() {
      current.child.kill('SIGCONT');
      await stopChild(current.child);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Opens a page logged in to `baseUrl`, collecting the page's errors in `problems`. */
export async function loggedInPage(browser, baseUrl) {
  const page = await browser.newPage();
  const problems = [];
  page.on('pageerror', (e) => problems.push(e.message));
  page.on('console', (m) => m.type() === 'error' && !/WebSocket/.test(m.text()) && problems.push(m.text()));
  await page.goto(`${baseUrl}/auth/login?token=${TOKEN}`);
  return { page, problems };
}

export async function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
}

/** Reads one of the project's KeldairHR samples as bytes. */
export function sample(name) {
  return readFileSync(join(ROOT, 'samples', 'keldairhr', `${name}.json`));
}

/** POSTs `body` to /hooks/{source} the way a webhook sender does. */
export async function sendHook(baseUrl, source, body) {
  if (typeof body !== 'string' && !(body instanceof Uint8Array)) body = JSON.stringify(body);
  const response = await fetch(`${baseUrl}/hooks/${source}`, {
    method: 'POST', headers: { 'content-type': 'application/json', 'x-e2e': 'yes' }, body,
  });
  return { status: response.status, json: await response.json() };
}

/** A small KeldairHR envelope. */
export function envelope(id, type) {
  return {
    id, type, version: '2022-02-23', dateOccurred: '2022-02-23T18:46:43+00:00',
    data: { applicant: { id: 'apl_7Qm2xK', firstName: 'Amara' } },
  };
}
