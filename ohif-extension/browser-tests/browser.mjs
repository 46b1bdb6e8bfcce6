// Headless Chromium for OncoFlow's browser tests: Debian's /usr/bin/chromium driven by playwright-core
// (no browser is ever downloaded), with the flags measured on these machines (docs: shared platform notes)
// and a fresh user-data-dir per launch, removed on close, so no cache or service worker survives a run.
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

export const CHROMIUM_PATH = process.env.CHROMIUM_PATH || '/usr/bin/chromium';

export const CHROMIUM_FLAGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--enable-unsafe-swiftshader',
  '--use-angle=swiftshader',
];

/**
 * Launch headless Chromium with a fresh profile.
 * @returns {Promise<{context: import('playwright-core').BrowserContext, page: import('playwright-core').Page,
 *   console: string[], close: () => Promise<void>}>} the page's console and page errors are collected in `console`
 */
export async function launchBrowser({ viewport = { width: 1400, height: 900 } } = {}) {
  const userDataDir = mkdtempSync(join(tmpdir(), 'oncoflow-chromium-'));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM_PATH,
    headless: true,
    args: CHROMIUM_FLAGS,
    viewport,
    serviceWorkers: 'block',
  });
  const page = context.pages()[0] ?? (await context.newPage());
  const console = [];
  page.on('console', (message) => console.push(`${message.type()}: ${message.text()}`));
  page.on('pageerror', (error) => console.push(`pageerror: ${error.message}`));
  const close = async () => {
    await context.close();
    rmSync(userDataDir, { recursive: true, force: true });
  };
  return { context, page, console, close };
}

/** The directory for screenshots and logs ($ONCOFLOW_ARTIFACTS, else $ARTIFACTS_DIR, else ./artifacts), created. */
export function artifactsDir() {
  const dir = process.env.ONCOFLOW_ARTIFACTS || process.env.ARTIFACTS_DIR || join(process.cwd(), 'artifacts');
  mkdirSync(dir, { recursive: true });
  return dir;
}

/** Pixels of a screenshot (PNG buffer) that are clearly red: the ensemble SEG over grey anatomy. */
export async function countRedPixels(page, png) {
  return page.evaluate(async (base64) => {
    const image = new Image();
    image.src = `data:image/png;base64,${base64}`;
    await image.decode();
    const canvas = document.createElement('canvas');
    canvas.width = image.width;
    canvas.height = image.height;
    const context = canvas.getContext('2d');
    context.drawImage(image, 0, 0);
    const { data } = context.getImageData(0, 0, canvas.width, canvas.height);
    let red = 0;
    for (let i = 0; i < data.length; i += 4) {
      if (data[i] > 150 && data[i] - data[i + 1] > 70 && data[i] - data[i + 2] > 70) red += 1;
    }
    return red;
  }, png.toString('base64'));
}

/** A required environment variable, or an error that names it. */
export function requiredEnv(name) {
  const value = process.env[name];
  if (!value) {
    throw new Error(`set ${name} (see the header of the test file)`);
  }
  return value;
}

/** In the page: whether a viewport canvas shows a non-black pixel (an image is on screen). */
export function viewportHasImage() {
  for (const canvas of document.querySelectorAll('canvas.cornerstone-canvas, .viewport-element canvas')) {
    if (!canvas.width || !canvas.height) continue;
    const context = canvas.getContext('2d', { willReadFrequently: true });
    if (!context) continue;
    const { data } = context.getImageData(0, 0, canvas.width, canvas.height);
    for (let i = 0; i < data.length; i += 16) {
      if (data[i] > 20 || data[i + 1] > 20 || data[i + 2] > 20) return true;
    }
  }
  return false;
}

/**
 * After navigating to the viewer: wait for Keycloak's login form (the viewer redirected an anonymous visitor).
 * A viewer without sign-in (the server wrote `window.oncoflowAuth = null;`) never goes there: that fails at once.
 */
export async function waitForKeycloakLogin(page, timeout) {
  const toKeycloak = page.waitForURL((url) => url.pathname.includes('/realms/oncoflow/'), { timeout }).then(() => 'keycloak');
  const signInOff = page.waitForFunction(() => window.config !== undefined && !window.oncoflowAuth, null, { timeout })
    .then(() => 'off', () => toKeycloak); // rejected when the page navigates away (to Keycloak)
  if ((await Promise.race([toKeycloak, signInOff])) === 'off') {
    const auth = await page.evaluate(() => JSON.stringify(window.oncoflowAuth ?? null));
    throw new Error(`the viewer has no sign-in: app-config.js set window.oncoflowAuth = ${auth} (is auth on?)`);
  }
  await page.locator('#username').waitFor({ state: 'visible', timeout });
}
