// Headless Chromium for OncoFlow's browser tests: Debian's /usr/bin/chromium driven by playwright-core
// (no browser is ever downloaded), with the flags measured on these machines (docs: shared platform notes)
// and a fresh user-data-dir per launch, removed on close, so no cache or service worker survives a run.
import { createHmac } from 'node:crypto';
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

const BASE32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

/**
 * The TOTP code (RFC 6238: HMAC-SHA1, 6 digits, 30 s, the realm's OTP policy) of a base32 secret at `now`.
 * The test's own implementation: what Keycloak checks it against is Keycloak's.
 */
export function totpCode(base32Secret, now = Date.now(), periodS = 30, digits = 6) {
  const bits = [...base32Secret.replace(/=+$/, '').toUpperCase()]
    .map((c) => {
      const value = BASE32.indexOf(c);
      if (value < 0) throw new Error('the TOTP secret is not base32');
      return value.toString(2).padStart(5, '0');
    }).join('');
  const key = Buffer.from(bits.match(/.{8}/g).map((byte) => parseInt(byte, 2)));
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(now / 1000 / periodS)));
  const mac = createHmac('sha1', key).update(counter).digest();
  const offset = mac[mac.length - 1] & 0x0f;
  return String((mac.readUInt32BE(offset) & 0x7fffffff) % 10 ** digits).padStart(digits, '0');
}

/**
 * On Keycloak's login page: enter the username and password, then, when Keycloak asks for it (doctors,
 * radiologists, admins), the TOTP code of `totpSecret` on its OTP page. Returns whether the OTP page came;
 * the caller then waits for the viewer (or Keycloak's error). Leaves `page` after the last submit.
 */
export async function signIn(page, { username, password, totpSecret, timeout }) {
  await page.locator('#username').fill(username);
  await page.locator('#password').fill(password);
  await page.locator('#kc-login').click();
  const otpForm = page.locator('#kc-otp-login-form');
  const asked = await Promise.race([
    otpForm.waitFor({ state: 'visible', timeout }).then(() => true),
    page.waitForURL((url) => !url.pathname.includes('/realms/oncoflow/'), { timeout }).then(() => false),
    page.locator('#input-error-username, #input-error').first().waitFor({ state: 'visible', timeout }).then(() => false),
  ]);
  if (!asked) return false;
  if (!totpSecret) throw new Error(`Keycloak asks ${username} for a TOTP code and the test was given no secret`);
  await page.locator('#otp').fill(totpCode(totpSecret));
  await page.locator('#kc-login').click();
  return true;
}
