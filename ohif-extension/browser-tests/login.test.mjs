// Sign-in to the OHIF viewer through Keycloak (OIDC code flow + PKCE) on a running OncoFlow stack with auth
// on, in headless Chromium: the study list then shows the user's assigned patients only, and every DICOMweb
// request of the page carries the bearer token.
//
// Environment:
//   ONCOFLOW_URL                 Orthanc's base URL, e.g. http://127.0.0.1:8042 (required)
//   ONCOFLOW_USERNAME            a Keycloak user of realm oncoflow, e.g. doctor.dev (required)
//   ONCOFLOW_PASSWORD            its password (required; never written to the artifacts)
//   ONCOFLOW_TOTP_SECRET         its TOTP secret (base32): the code Keycloak asks doctors, radiologists
//                                and admins for is computed from it (never written to the artifacts)
//   ONCOFLOW_EXPECT_OTP          'yes' when Keycloak must ask this user for a TOTP code, 'no' when not
//   ONCOFLOW_EXPECT_PATIENTS     comma-separated PatientIDs the study list must show (may be empty)
//   ONCOFLOW_FORBIDDEN_PATIENTS  comma-separated PatientIDs that must appear neither in the list nor in any
//                                QIDO answer (may be empty)
//   ONCOFLOW_ARTIFACTS           where screenshots, the console log and the request log go
//                                (default $ARTIFACTS_DIR, else ./artifacts)
//   LOGIN_TIMEOUT_MS             how long to wait for each stage (default 90000)
//
// Writes login-page.png, login-study-list.png, login-study-list.json (the rows' cells and the studies the
// searches answered), login-console.log and login-requests.json (URL, status and whether a bearer token went
// with it, per DICOMweb request; never the token), and login-failure.png when it fails.
// Run: node --test login.test.mjs
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { artifactsDir, launchBrowser, requiredEnv, signIn, waitForKeycloakLogin } from './browser.mjs';

/** A comma-separated list of PatientIDs (blanks dropped). */
export function patientList(value) {
  return (value || '').split(',').map((id) => id.trim()).filter(Boolean);
}

/** The payload of a JWT (not verified: only to say whose token the page sent). */
export function jwtClaims(token) {
  const payload = token.split('.')[1] ?? '';
  return JSON.parse(Buffer.from(payload.replace(/-/g, '+').replace(/_/g, '/'), 'base64').toString('utf8'));
}

/** A DICOM PN (Family^Given^Middle) as OHIF's study list shows it: "Family, Given Middle". */
export function displayedName(dicomName) {
  const [family, ...rest] = String(dicomName || '').split('^').filter(Boolean);
  return rest.length ? `${family}, ${rest.join(' ')}` : family ?? '';
}

/** The studies of a QIDO-RS JSON answer: {uid, patientId, patientName (as displayed)}. */
export function qidoStudies(body) {
  const first = (study, tag) => study?.[tag]?.Value?.[0];
  return (Array.isArray(body) ? body : []).map((study) => {
    const name = first(study, '00100010');
    return {
      uid: String(first(study, '0020000D') ?? ''),
      patientId: String(first(study, '00100020') ?? ''),
      patientName: displayedName(typeof name === 'object' && name ? name.Alphabetic : name),
    };
  });
}


test('a user signs in through Keycloak and sees only the assigned patients, with a bearer token on DICOMweb', async () => {
  const baseUrl = requiredEnv('ONCOFLOW_URL').replace(/\/$/, '');
  const username = requiredEnv('ONCOFLOW_USERNAME');
  const password = requiredEnv('ONCOFLOW_PASSWORD');
  const totpSecret = process.env.ONCOFLOW_TOTP_SECRET || '';
  const expected = patientList(process.env.ONCOFLOW_EXPECT_PATIENTS);
  const forbidden = patientList(process.env.ONCOFLOW_FORBIDDEN_PATIENTS);
  const both = expected.filter((id) => forbidden.includes(id));
  assert.deepEqual(both, [], `patients both expected and forbidden: ${both.join(', ')}`);
  const timeout = Number(process.env.LOGIN_TIMEOUT_MS || 90000);
  const artifacts = artifactsDir();
  const viewerUrl = `${baseUrl}/ohif/`;

  const { page, console: consoleLines, close } = await launchBrowser();
  // every request of the page to OncoFlow's QIDO proxy or Orthanc's DICOMweb, with its Authorization header
  const dicomWeb = [];
  const pending = [];
  const qido = new Map(); // StudyInstanceUID -> study, from every study search the page made
  const isDicomWeb = (url) => {
    if (!url.startsWith(`${baseUrl}/`)) return false;
    const { pathname } = new URL(url);
    return pathname.startsWith('/oncoflow/dicom-web') || pathname.startsWith('/dicom-web');
  };
  let authorizeUrl = null; // the viewer's authorization request to Keycloak
  page.on('request', (request) => {
    if (!authorizeUrl && new URL(request.url()).pathname.endsWith('/realms/oncoflow/protocol/openid-connect/auth')) {
      authorizeUrl = new URL(request.url());
    }
    if (!isDicomWeb(request.url())) return;
    const entry = { method: request.method(), url: request.url(), authorization: null, status: null };
    dicomWeb.push(entry);
    pending.push(request.allHeaders().then((headers) => {
      entry.authorization = headers.authorization ?? null;
    }));
  });
  page.on('response', (response) => {
    const url = response.url();
    if (!isDicomWeb(url)) return;
    const entry = dicomWeb.findLast((e) => e.url === url && e.status === null);
    if (entry) entry.status = response.status();
    if (new URL(url).pathname.startsWith('/oncoflow/dicom-web/studies') && response.status() === 200) {
      pending.push(response.json().then((body) => qidoStudies(body).forEach((study) => qido.set(study.uid, study)), () => undefined));
    }
  });

  let otpAsked = false;
  let stage = 'open the viewer';
  try {
    // 1. the viewer sends an anonymous visitor to Keycloak's login page
    const response = await page.goto(viewerUrl);
    assert.equal(response.status(), 200, `GET ${viewerUrl}`);
    stage = 'redirect to Keycloak';
    await waitForKeycloakLogin(page, timeout);
    await page.screenshot({ path: join(artifacts, 'login-page.png'), fullPage: true });
    // the code flow with PKCE (S256), for the client the server named, back to the viewer's /ohif/callback
    assert.ok(authorizeUrl, `no authorization request to Keycloak (at ${page.url()})`);
    const authorize = authorizeUrl.searchParams;
    assert.equal(authorize.get('response_type'), 'code', authorizeUrl.href);
    assert.equal(authorize.get('code_challenge_method'), 'S256', authorizeUrl.href);
    assert.ok(authorize.get('code_challenge'), `no PKCE code_challenge in ${authorizeUrl.href}`);
    assert.equal(authorize.get('redirect_uri'), `${viewerUrl}callback`, authorizeUrl.href);

    // 2. sign in
    stage = 'sign in';
    otpAsked = await signIn(page, { username, password, totpSecret, timeout });
    assert.equal(otpAsked ? 'yes' : 'no', requiredEnv('ONCOFLOW_EXPECT_OTP'),
      `Keycloak ${otpAsked ? 'asked' : 'did not ask'} ${username} for a TOTP code`);
    stage = 'back on the viewer';
    // OHIF exchanges the code at /ohif/callback, then navigates to where the visit began ('/' -> /ohif)
    const onViewer = (url) => url.origin === new URL(baseUrl).origin && /^\/ohif(\/|$)/.test(url.pathname) &&
      !url.pathname.startsWith('/ohif/callback');
    // Keycloak answers a refused sign-in with its login page again, an error under the fields
    const keycloakError = page.locator('[id^="input-error"], .kc-feedback-text, #kc-error-message').first();
    const outcome = await Promise.race([
      page.waitForURL(onViewer, { timeout }).then(() => 'viewer'),
      keycloakError.waitFor({ state: 'visible', timeout }).then(() => 'refused'),
    ]).catch((error) => {
      throw new Error(`not back on ${viewerUrl} (at ${page.url()}): ${error.message}`);
    });
    if (outcome === 'refused') {
      throw new Error(`Keycloak refused the sign-in of ${username}: ${(await keycloakError.innerText()).trim()}`);
    }

    // 3. the study list, searched with the token. OHIF 3.13's list shows the patient's name, not the PatientID,
    // so a patient counts as listed when a study of theirs is in the page's QIDO answers (the list is built
    // from nothing else) and a row shows that study (its patient name or PatientID).
    stage = 'study list';
    const search = await page.waitForResponse((r) => new URL(r.url()).pathname.startsWith('/oncoflow/dicom-web/studies'), { timeout });
    assert.equal(search.status(), 200, `study search ${search.url()}`);
    await page.waitForLoadState('networkidle', { timeout: 30000 }).catch(() => undefined);
    await Promise.all(pending);
    const studiesOf = (id) => [...qido.values()].filter((study) => study.patientId === id);
    for (const id of expected) {
      const studies = studiesOf(id);
      assert.ok(studies.length > 0, `expected patient ${id} is not in the study search answers ` +
        `(patients answered: ${[...new Set([...qido.values()].map((s) => s.patientId))].join(', ') || 'none'})`);
      const shown = page.locator('tbody tr').filter({ hasText: new RegExp(studies.flatMap((s) => [s.patientId, s.patientName])
        .filter(Boolean).map((t) => t.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|')) });
      await shown.first().waitFor({ state: 'visible', timeout });
    }
    const rows = (await page.locator('tbody tr').evaluateAll((trs) => trs
      .filter((tr) => !tr.querySelector('input')) // the filter row
      .map((tr) => [...tr.querySelectorAll('td')].map((td) => td.innerText.trim())))).filter((cells) => cells.some(Boolean));
    await page.screenshot({ path: join(artifacts, 'login-study-list.png'), fullPage: true });
    writeFileSync(join(artifacts, 'login-study-list.json'), JSON.stringify({ rows, searched: [...qido.values()] }, null, 1) + '\n');
    for (const id of forbidden) {
      assert.equal(studiesOf(id).length, 0, `forbidden patient ${id} is in the study search answers`);
      assert.ok(!rows.some((cells) => cells.includes(id)), `forbidden patient ${id} is listed; rows: ${JSON.stringify(rows)}`);
    }

    // 4. selecting an expected patient's study: the list asks for its series (one more DICOMweb request)
    const first = expected.length ? studiesOf(expected[0])[0] : null;
    if (first) {
      stage = 'study preview';
      const seriesSearch = page.waitForRequest((r) => new URL(r.url()).pathname.includes(`/studies/${first.uid}`), { timeout });
      await page.locator('tbody tr').filter({ hasText: first.patientName || first.patientId }).first().click();
      await seriesSearch;
      await page.waitForLoadState('networkidle', { timeout: 30000 }).catch(() => undefined);
    }

    // 5. every DICOMweb request of the page carried the signed-in user's bearer token
    stage = 'bearer tokens';
    await Promise.all(pending);
    assert.ok(dicomWeb.length > 0, 'the page made no DICOMweb request');
    const without = dicomWeb.filter((e) => !/^Bearer \S+$/.test(e.authorization ?? ''));
    assert.deepEqual(without.map((e) => `${e.method} ${e.url}`), [], 'DICOMweb requests without a bearer token');
    const refused = dicomWeb.filter((e) => e.status === 401 || e.status === 403);
    assert.deepEqual(refused.map((e) => `${e.status} ${e.url}`), [], 'DICOMweb requests refused');
    const claims = jwtClaims(dicomWeb.at(-1).authorization.slice('Bearer '.length));
    assert.ok(String(claims.iss).endsWith('/realms/oncoflow'), `token issuer ${claims.iss}`);
    assert.equal(claims.preferred_username, username, 'the token is the signed-in user’s');
    const answered = [...new Set([...qido.values()].map((s) => s.patientId))];
    console.log(`signed in as ${username}; ${rows.length} rows, patients answered: ${answered.join(', ') || 'none'}; ` +
      `${dicomWeb.length} DICOMweb requests, all with a bearer token`);
  } catch (error) {
    await page.screenshot({ path: join(artifacts, 'login-failure.png'), fullPage: true }).catch(() => undefined);
    throw new Error(`login test failed at "${stage}" (page ${page.url()}; artifacts in ${artifacts}): ${error.message}`,
      { cause: error });
  } finally {
    writeFileSync(join(artifacts, 'login-console.log'), consoleLines.join('\n') + '\n');
    writeFileSync(join(artifacts, 'login-requests.json'), JSON.stringify(dicomWeb.map((e) => ({
      method: e.method, url: e.url, status: e.status, bearer: /^Bearer \S+$/.test(e.authorization ?? ''),
    })), null, 1) + '\n');
    await close();
  }
});
