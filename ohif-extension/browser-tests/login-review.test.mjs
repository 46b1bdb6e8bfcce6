// The OncoFlow review mode with login on, through Orthanc's real request filter, in headless Chromium: a user
// signs in through Keycloak on the way to /ohif/oncoflow-review, the assigned study's images load, the
// OncoFlow panel fills, the signed PDF opens and the ensemble SEG is drawn, and no request of the page is
// refused (a route the viewer calls that OncoFlow's role table does not know is admin-only: it would silently
// break the viewer for a radiologist). Then the review mode of a study of a patient the user is not assigned
// to shows nothing of it: its requests are refused.
//
// Environment:
//   ONCOFLOW_URL                 Orthanc's base URL, e.g. http://127.0.0.1:8042 (required)
//   ONCOFLOW_USERNAME            a Keycloak user of realm oncoflow who may read images, e.g. radiologist.dev
//                                (required)
//   ONCOFLOW_PASSWORD            its password (required; never written to the artifacts)
//   ONCOFLOW_TOTP_SECRET         its TOTP secret (base32): the code Keycloak asks doctors, radiologists
//                                and admins for is computed from it (never written to the artifacts)
//   ONCOFLOW_EXPECT_OTP          'yes' when Keycloak must ask this user for a TOTP code, 'no' when not
//   ONCOFLOW_OPEN_STUDY          StudyInstanceUID of a processed study of a patient assigned to the user (required)
//   ONCOFLOW_EXPECT_VOLUME_CM3   that study's tumour volume as OncoFlow's timeline answers it (optional: when
//                                set, the panel must show it)
//   ONCOFLOW_FORBIDDEN_STUDY     StudyInstanceUID of a study of a patient not assigned to the user (optional:
//                                when set, its review mode must show no image and its requests must be refused)
//   ONCOFLOW_ARTIFACTS           where screenshots, the console log and the request log go
//                                (default $ARTIFACTS_DIR, else ./artifacts)
//   LOGIN_TIMEOUT_MS             how long to wait for each stage (default 90000)
//
// Writes login-review.png (the assigned study and its panel), login-review-seg.png (its ensemble SEG drawn),
// login-review-forbidden.png, login-review-console.log and login-review-requests.json: per phase, each
// same-origin request to /oncoflow/, /dicom-web/ or /wado with its method, path, status and whether a bearer
// token went with it (never the token, never a query), and a summary by route pattern; login-review-failure.png
// when it fails.
// Run: node --test login-review.test.mjs
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import {
  artifactsDir, countRedPixels, launchBrowser, requiredEnv, signIn, viewportHasImage, waitForKeycloakLogin,
} from './browser.mjs';

const REFUSED = new Set([401, 403]);

/**
 * The route pattern of a request path: the studies given by name ({open}, {forbidden}), other DICOM UIDs
 * {uid}, Orthanc IDs {id}, the PatientID of OncoFlow's patient routes {pid}; /wado keeps its query's keys.
 */
export function routePattern(method, url, named = {}) {
  const { pathname, searchParams } = new URL(url);
  let path = pathname;
  for (const [name, uid] of Object.entries(named)) {
    if (uid) path = path.split(uid).join(`{${name}}`);
  }
  path = path
    .replace(/\/oncoflow\/patients\/[^/]+/, '/oncoflow/patients/{pid}')
    .replace(/(?<=\/)[0-9]+(?:\.[0-9]+)+(?=\/|\.pdf$|$)/g, '{uid}')
    .replace(/(?<=\/)[0-9a-f]{8}(?:-[0-9a-f]{8}){4}(?=\/|$)/g, '{id}')
    .replace(/\/frames\/[0-9,]+$/, '/frames/{n}');
  if (pathname === '/wado') path += `?${[...searchParams.keys()].sort().join('&')}`;
  return `${method} ${path}`;
}

/** {pattern: {status: count}} over `entries`. */
export function summarise(entries) {
  const summary = {};
  for (const e of entries) {
    const byStatus = (summary[e.route] ??= {});
    byStatus[e.status ?? 'no answer'] = (byStatus[e.status ?? 'no answer'] ?? 0) + 1;
  }
  return Object.fromEntries(Object.entries(summary).sort(([a], [b]) => a.localeCompare(b)));
}


test('a signed-in user reviews an assigned study with no request refused, and sees nothing of another patient', async () => {
  const baseUrl = requiredEnv('ONCOFLOW_URL').replace(/\/$/, '');
  const username = requiredEnv('ONCOFLOW_USERNAME');
  const password = requiredEnv('ONCOFLOW_PASSWORD');
  const totpSecret = process.env.ONCOFLOW_TOTP_SECRET || '';
  const openStudy = requiredEnv('ONCOFLOW_OPEN_STUDY');
  const forbiddenStudy = process.env.ONCOFLOW_FORBIDDEN_STUDY || '';
  const expectedVolume = process.env.ONCOFLOW_EXPECT_VOLUME_CM3 ? Number(process.env.ONCOFLOW_EXPECT_VOLUME_CM3) : null;
  assert.notEqual(openStudy, forbiddenStudy, 'the open and the forbidden study are the same');
  const timeout = Number(process.env.LOGIN_TIMEOUT_MS || 90000);
  const artifacts = artifactsDir();
  const reviewUrl = (uid) => `${baseUrl}/ohif/oncoflow-review?StudyInstanceUIDs=${uid}`;
  const named = { open: openStudy, forbidden: forbiddenStudy };

  const { context, page, console: consoleLines, close } = await launchBrowser({ viewport: { width: 1600, height: 1000 } });
  // every request of the page (and its workers) to OncoFlow's routes, Orthanc's DICOMweb or WADO-URI
  const log = [];
  const byRequest = new Map();
  const pending = [];
  const qidoAnswers = []; // {phase, uids} of each QIDO study search answered 200
  let phase = 'sign-in';
  const watched = (url) => {
    if (!url.startsWith(`${baseUrl}/`)) return false;
    const { pathname } = new URL(url);
    return pathname.startsWith('/oncoflow/') || pathname.startsWith('/dicom-web/') || pathname === '/wado';
  };
  page.on('request', (request) => {
    if (!watched(request.url())) return;
    const { pathname, searchParams } = new URL(request.url());
    const entry = {
      phase, method: request.method(), path: pathname, route: routePattern(request.method(), request.url(), named),
      studyUid: searchParams.get('studyUID'), status: null, bearer: false,
    };
    log.push(entry);
    byRequest.set(request, entry);
    pending.push(request.allHeaders().then((headers) => {
      entry.bearer = /^Bearer \S+$/.test(headers.authorization ?? '');
    }, () => undefined));
  });
  page.on('response', (response) => {
    const entry = byRequest.get(response.request());
    if (!entry) return;
    entry.status = response.status();
    if (entry.path === '/oncoflow/dicom-web/studies' && entry.status === 200) {
      const answerPhase = entry.phase;
      pending.push(response.json().then((body) => qidoAnswers.push({
        phase: answerPhase,
        uids: (Array.isArray(body) ? body : []).map((study) => String(study?.['0020000D']?.Value?.[0] ?? '')),
      }), () => undefined));
    }
  });
  page.on('requestfailed', (request) => {
    const entry = byRequest.get(request);
    if (entry && entry.status === null) entry.status = `failed (${request.failure()?.errorText ?? '?'})`;
  });
  const refusedIn = (name) => log.filter((e) => e.phase === name && REFUSED.has(e.status));
  const describe = (entries) => entries.map((e) => `${e.status} ${e.method} ${e.path}`).join('\n  ');
  const settle = async () => {
    await page.waitForLoadState('networkidle', { timeout: 30000 }).catch(() => undefined);
    await Promise.all(pending);
  };
  const summary = {};

  let otpAsked = false;
  let stage = 'open the review mode';
  try {
    // 1. the review mode's URL sends an anonymous visitor to Keycloak's login page
    const response = await page.goto(reviewUrl(openStudy));
    assert.equal(response.status(), 200, `GET ${reviewUrl(openStudy)}`);
    stage = 'redirect to Keycloak';
    await waitForKeycloakLogin(page, timeout);

    // 2. sign in; OHIF comes back to the review mode's URL (where the visit began)
    stage = 'sign in';
    phase = 'assigned';
    otpAsked = await signIn(page, { username, password, totpSecret, timeout });
    assert.equal(otpAsked ? 'yes' : 'no', requiredEnv('ONCOFLOW_EXPECT_OTP'),
      `Keycloak ${otpAsked ? 'asked' : 'did not ask'} ${username} for a TOTP code`);
    stage = 'back on the review mode';
    const keycloakError = page.locator('[id^="input-error"], .kc-feedback-text, #kc-error-message').first();
    const outcome = await Promise.race([
      page.waitForURL((url) => url.origin === new URL(baseUrl).origin && url.pathname.startsWith('/ohif/') &&
        !url.pathname.startsWith('/ohif/callback'), { timeout }).then(() => 'viewer'),
      keycloakError.waitFor({ state: 'visible', timeout }).then(() => 'refused'),
    ]).catch((error) => {
      throw new Error(`not back on the viewer (at ${page.url()}): ${error.message}`);
    });
    if (outcome === 'refused') {
      throw new Error(`Keycloak refused the sign-in of ${username}: ${(await keycloakError.innerText()).trim()}`);
    }
    const landed = new URL(page.url());
    assert.equal(landed.pathname, '/ohif/oncoflow-review', `after sign-in OHIF went to ${landed.pathname}, not the review mode`);
    assert.equal(landed.searchParams.get('StudyInstanceUIDs'), openStudy, 'after sign-in the review mode lost its study');

    // 3. the assigned study: an image on screen, the OncoFlow panel filled (its flag and the study's volume)
    stage = 'first image of the assigned study';
    const refusedSoFar = () => (refusedIn('assigned').length ? `; refused so far:\n  ${describe(refusedIn('assigned'))}` : '');
    await page.waitForFunction(viewportHasImage, null, { timeout, polling: 250 }).catch((error) => {
      throw new Error(`${error.message}${refusedSoFar()}`);
    });
    stage = 'OncoFlow panel of the assigned study';
    const flag = page.getByTestId('oncoflow-flag').first();
    await flag.waitFor({ state: 'visible', timeout }).catch((error) => {
      throw new Error(`${error.message}${refusedSoFar()}`);
    });
    assert.equal(await page.getByTestId('oncoflow-panel').first().getAttribute('data-study-instance-uid'), openStudy,
      'the panel is not on the opened study');
    const flagText = (await flag.innerText()).trim();
    assert.ok(flagText, 'the panel shows an empty flag');
    const volume = page.getByTestId('oncoflow-volume-baseline').first();
    await volume.waitFor({ state: 'visible', timeout });
    const shownVolume = Number(await volume.getAttribute('data-value'));
    assert.ok(Number.isFinite(shownVolume), `the panel's volume is ${await volume.getAttribute('data-value')}`);
    if (expectedVolume !== null) {
      assert.ok(Math.abs(shownVolume - expectedVolume) < 1e-3, `the panel shows ${shownVolume} cm³, OncoFlow ${expectedVolume} cm³`);
    }
    await page.getByTestId('oncoflow-job-state').first().waitFor({ state: 'visible', timeout });
    assert.equal(await page.getByTestId('oncoflow-job-state').first().getAttribute('data-value'), 'done', 'the job state');
    await settle();
    await page.screenshot({ path: join(artifacts, 'login-review.png') });

    // 4. the signed PDF: with login on, a click fetches it with the token (a plain link would be refused)
    stage = 'signed PDF report';
    const reportLink = page.getByTestId('oncoflow-report-link').first();
    await reportLink.waitFor({ state: 'visible', timeout });
    const pdfResponse = page.waitForResponse((r) => new URL(r.url()).pathname.startsWith('/oncoflow/reports/'), { timeout });
    await reportLink.click();
    const pdf = await pdfResponse;
    assert.equal(pdf.status(), 200, `GET ${new URL(pdf.url()).pathname}`);
    assert.match(pdf.headers()['content-type'] ?? '', /^application\/pdf/);
    for (const other of context.pages()) {
      if (other !== page) await other.close().catch(() => undefined); // the PDF's tab
    }
    await settle();

    // 5. the ensemble SEG over the images (its metadata and frames come from WADO-RS, with the token): the review
    // mode draws it by itself, on the lesion's slice, with no click and no prompt
    stage = 'ensemble SEG overlay';
    const viewports = page.locator('canvas.cornerstone-canvas');
    let red = 0;
    const deadline = Date.now() + timeout;
    // until drawn, or a refusal says why it will not be (step 6 lists it)
    while (red <= 40 && !refusedIn('assigned').length && Date.now() < deadline) {
      await page.waitForTimeout(1000);
      red = 0;
      for (let i = 0; i < (await viewports.count()); i += 1) {
        red += await countRedPixels(page, await viewports.nth(i).screenshot());
      }
    }
    await settle();
    await page.screenshot({ path: join(artifacts, 'login-review-seg.png') });
    assert.ok(red > 40 || refusedIn('assigned').length, `red SEG pixels in the viewport: ${red}`);

    // 6. nothing the review mode asked for was refused, everything went with the token, the images came
    // from WADO-RS of the opened study
    stage = 'requests of the assigned study';
    const assigned = log.filter((e) => e.phase === 'assigned');
    summary.assigned = summarise(assigned);
    const refused = refusedIn('assigned');
    assert.equal(refused.length, 0, `${refused.length} requests of the review mode refused for ${username} (the ` +
      `viewer needs them; routes in login-review-requests.json):\n  ${describe(refused)}`);
    const without = assigned.filter((e) => !e.bearer);
    assert.equal(without.length, 0, `requests without a bearer token:\n  ${describe(without)}`);
    const wado = assigned.filter((e) => e.path.startsWith(`/dicom-web/studies/${openStudy}/`) && e.status === 200);
    assert.ok(wado.length > 0, `no WADO-RS request of the opened study answered 200; routes: ${JSON.stringify(summary.assigned)}`);
    console.log(`review mode of the assigned study as ${username}: flag "${flagText}", ${shownVolume} cm³, ` +
      `${assigned.length} requests, none refused`);

    // 7. the review mode of a patient the user is not assigned to: refused, and no image of it on screen
    if (forbiddenStudy) {
      stage = 'review mode of the forbidden study';
      phase = 'forbidden';
      const ofForbidden = (e) => e.path.includes(forbiddenStudy) || e.studyUid === forbiddenStudy;
      const firstRefusal = page.waitForResponse((r) => {
        const entry = byRequest.get(r.request());
        return entry?.phase === 'forbidden' && ofForbidden(entry) && r.status() === 403;
      }, { timeout });
      await page.goto(reviewUrl(forbiddenStudy));
      await firstRefusal.catch((error) => {
        throw new Error(`no request of the forbidden study was refused (403): ${error.message}`);
      });
      await settle();
      await page.waitForTimeout(3000); // time for an image that should not come
      await settle();
      await page.screenshot({ path: join(artifacts, 'login-review-forbidden.png') });
      const forbidden = log.filter((e) => e.phase === 'forbidden');
      summary.forbidden = summarise(forbidden);
      const about = forbidden.filter(ofForbidden);
      const served = about.filter((e) => typeof e.status === 'number' && e.status >= 200 && e.status < 300);
      assert.equal(served.length, 0, `requests of the forbidden study answered:\n  ${describe(served)}`);
      assert.ok(about.some((e) => e.status === 403), 'no request of the forbidden study was refused');
      const searched = qidoAnswers.filter((a) => a.phase === 'forbidden' && a.uids.includes(forbiddenStudy));
      assert.equal(searched.length, 0, 'a study search answered the forbidden study');
      assert.equal(await page.evaluate(viewportHasImage), false, 'a viewport shows an image of the forbidden study');
      console.log(`review mode of the forbidden study: ${about.length} requests naming it, ` +
        `${about.filter((e) => e.status === 403).length} refused (403), none answered, no image`);
    }
  } catch (error) {
    await page.screenshot({ path: join(artifacts, 'login-review-failure.png'), fullPage: true }).catch(() => undefined);
    throw new Error(`login review test failed at "${stage}" (page ${new URL(page.url()).pathname}; artifacts in ` +
      `${artifacts}): ${error.message}`, { cause: error });
  } finally {
    await Promise.all(pending).catch(() => undefined);
    for (const name of ['assigned', 'forbidden']) {
      summary[name] ??= summarise(log.filter((e) => e.phase === name));
    }
    writeFileSync(join(artifacts, 'login-review-console.log'), consoleLines.join('\n') + '\n');
    writeFileSync(join(artifacts, 'login-review-requests.json'), JSON.stringify({
      summary,
      requests: log.map(({ phase: p, method, path, route, status, bearer }) => ({ phase: p, method, path, route, status, bearer })),
    }, null, 1) + '\n');
    await close();
  }
});
