// Uploading images from the OHIF study list (STOW-RS) with login on, in headless Chromium: the user signs in
// through Keycloak (password and TOTP code), opens the list's "Upload" dialog and gives it one DICOM file at a
// time. Each upload must go to OncoFlow's checked route (/oncoflow/dicom-web/studies, never the DICOMweb plug-in's
// /dicom-web/studies) with the user's bearer token, and the dialog must say what OncoFlow answered: "Completed!"
// for a file the user may upload, "Completed with 1 error!" for one it may not.
//
// Environment:
//   ONCOFLOW_URL                 Orthanc's base URL (required)
//   ONCOFLOW_USERNAME / _PASSWORD / _TOTP_SECRET / _EXPECT_OTP   the user, as in login.test.mjs (required)
//   ONCOFLOW_UPLOAD_ACCEPTED     a DICOM file the user may upload (its patient is assigned to them) (required)
//   ONCOFLOW_UPLOAD_REFUSED      a DICOM file the user may not upload (another patient's) (required)
//   ONCOFLOW_ARTIFACTS           where screenshots and upload.json go (default $ARTIFACTS_DIR, else ./artifacts)
//   LOGIN_TIMEOUT_MS             how long to wait for each stage (default 90000)
//
// Writes upload-accepted.png, upload-refused.png, upload-console.log, upload.json (each STOW request: path,
// status, whether a bearer token went with it, the dialog's result line) and upload-failure.png when it fails.
// Run: node --test upload.test.mjs
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { artifactsDir, launchBrowser, requiredEnv, signIn, waitForKeycloakLogin } from './browser.mjs';

test('the study list uploads through OncoFlow: an assigned patient\'s file is taken, another\'s is refused', async () => {
  const baseUrl = requiredEnv('ONCOFLOW_URL').replace(/\/$/, '');
  const username = requiredEnv('ONCOFLOW_USERNAME');
  const password = requiredEnv('ONCOFLOW_PASSWORD');
  const totpSecret = process.env.ONCOFLOW_TOTP_SECRET || '';
  const files = { accepted: requiredEnv('ONCOFLOW_UPLOAD_ACCEPTED'), refused: requiredEnv('ONCOFLOW_UPLOAD_REFUSED') };
  const timeout = Number(process.env.LOGIN_TIMEOUT_MS || 90000);
  const artifacts = artifactsDir();
  const { page, console: consoleLines, close } = await launchBrowser();
  const uploads = [];
  let stage = 'open the viewer';
  try {
    await page.goto(`${baseUrl}/ohif/`);
    await waitForKeycloakLogin(page, timeout);
    stage = 'sign in';
    const otpAsked = await signIn(page, { username, password, totpSecret, timeout });
    assert.equal(otpAsked ? 'yes' : 'no', requiredEnv('ONCOFLOW_EXPECT_OTP'),
      `Keycloak ${otpAsked ? 'asked' : 'did not ask'} ${username} for a TOTP code`);
    await page.waitForURL((url) => url.origin === baseUrl && url.pathname.startsWith('/ohif') &&
      !url.pathname.startsWith('/ohif/callback'), { timeout });

    for (const [name, file] of Object.entries(files)) {
      stage = `upload (${name})`;
      const button = page.getByRole('button', { name: 'Upload', exact: true });
      await button.waitFor({ state: 'visible', timeout });
      await button.click();
      const dialog = page.getByRole('dialog', { name: 'Upload files' });
      await dialog.waitFor({ timeout });
      const posted = page.waitForRequest((r) => r.method() === 'POST' && new URL(r.url()).pathname.endsWith('/studies'),
        { timeout });
      await dialog.locator('input[type=file]:not([webkitdirectory])').setInputFiles(file);
      const request = await posted;
      const response = await request.response();
      const headers = await request.allHeaders();
      await dialog.getByText(/^Completed/).waitFor({ timeout });
      const result = (await dialog.getByText(/^Completed/).first().innerText()).trim();
      uploads.push({ name, path: new URL(request.url()).pathname, status: response?.status() ?? null,
        bearer: /^Bearer \S+$/.test(headers.authorization ?? ''), result });
      await page.screenshot({ path: join(artifacts, `upload-${name}.png`), fullPage: true });
      await dialog.locator('button[data-cy]', { hasText: 'Close' }).click();
      await dialog.waitFor({ state: 'detached', timeout });
    }
    stage = 'what the dialog said';
    assert.deepEqual(uploads.map((u) => [u.name, u.path, u.bearer]), [
      ['accepted', '/oncoflow/dicom-web/studies', true], ['refused', '/oncoflow/dicom-web/studies', true]]);
    assert.equal(uploads[0].result, 'Completed!', JSON.stringify(uploads));
    assert.equal(uploads[1].result, 'Completed with 1 error!', JSON.stringify(uploads));
    assert.ok([200, 202].includes(uploads[0].status) && uploads[1].status === 409, JSON.stringify(uploads));
  } catch (error) {
    await page.screenshot({ path: join(artifacts, 'upload-failure.png'), fullPage: true }).catch(() => undefined);
    throw new Error(`upload test failed at "${stage}" (page ${page.url()}; artifacts in ${artifacts}): ${error.message}`,
      { cause: error });
  } finally {
    writeFileSync(join(artifacts, 'upload-console.log'), consoleLines.join('\n') + '\n');
    writeFileSync(join(artifacts, 'upload.json'), JSON.stringify(uploads, null, 1) + '\n');
    await close();
  }
});
