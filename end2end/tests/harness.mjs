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

/** Starts `target/release/hookscope` (or $HOOKSCOPE_BIN); resolves once it prints its address. */
export async function startHookscope() {
  const dir = mkdtempSync(join(tmpdir(), 'hookscope-e2e-'));
  const bin = process.env.HOOKSCOPE_BIN ?? join(ROOT, 'target', 'release', 'hookscope');
  const child = spawn(bin, [
    'serve', '--listen', '127.0.0.1:0', '--database-url', `sqlite://${join(dir, 'e2e.db')}`, '--token', TOKEN,
  ], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
  const baseUrl = await new Promise((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (chunk) => {
      out += chunk;
      const match = out.match(/listening on (http:\/\/[\d.:]+)/);
      if (match) resolve(match[1]);
    });
    child.on('exit', (code) => reject(new Error(`hookscope exited early (${code}): ${out}`)));
  });
  return {
    baseUrl,
    async stop() {
      child.kill('SIGTERM');
      await new Promise((resolve) => child.once('exit', resolve));
      rmSync(dir, { recursive: true, force: true });
    },
  };
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
  const response = await fetch(`${baseUrl}/hooks/${source}`, {
    method: 'POST', headers: { 'content-type': 'application/json', 'x-e2e': 'yes' }, body,
  });
  return { status: response.status, json: await response.json() };
}
