// OHIF's study list at /ohif/ on a running OncoFlow stack, in headless Chromium.
//
// Environment:
//   ONCOFLOW_URL              Orthanc's base URL, e.g. http://127.0.0.1:8042 (required)
//   EXPECT_PATIENT_ID         the pushed study's PatientID (required)
//   EXPECT_PATIENT_NAME       its PatientName as DICOM writes it (Family^Given); the row must show it
//                             ("Family, Given") or the PatientID
//   EXPECT_STUDY_DESCRIPTION  its StudyDescription (required)
//   EXPECT_STUDY_DATE         its StudyDate, YYYYMMDD (required)
//   EXPECT_MODALITY           a modality the row must list (default MR)
//   ARTIFACTS_DIR             where the screenshot, console log and timing go (default ./artifacts)
//   STUDY_LIST_TIMEOUT_MS     how long to wait for the row (default 60000)
//
// Run: node --test study-list.test.mjs
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { artifactsDir, launchBrowser, requiredEnv } from './browser.mjs';

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** YYYYMMDD as OHIF 3.13's study list shows it: 14-Mar-2025. */
export function displayedDate(dicomDate) {
  const match = /^(\d{4})(\d{2})(\d{2})$/.exec(dicomDate);
  assert.ok(match, `EXPECT_STUDY_DATE=${dicomDate} is not YYYYMMDD`);
  const [, year, month, day] = match;
  return `${day}-${MONTHS[Number(month) - 1]}-${year}`;
}

/** A DICOM PN (Family^Given^Middle) as OHIF shows it: "Family, Given Middle". */
export function displayedName(dicomName) {
  const [family, ...rest] = dicomName.split('^').filter(Boolean);
  return rest.length ? `${family}, ${rest.join(' ')}` : family;
}

test('the OHIF study list shows the pushed study with patient, date, description and modality', async () => {
  const baseUrl = requiredEnv('ONCOFLOW_URL').replace(/\/$/, '');
  const patientId = requiredEnv('EXPECT_PATIENT_ID');
  const patientName = process.env.EXPECT_PATIENT_NAME ? displayedName(process.env.EXPECT_PATIENT_NAME) : null;
  const description = requiredEnv('EXPECT_STUDY_DESCRIPTION');
  const date = displayedDate(requiredEnv('EXPECT_STUDY_DATE'));
  const modality = process.env.EXPECT_MODALITY || 'MR';
  const timeoutMs = Number(process.env.STUDY_LIST_TIMEOUT_MS || 60000);
  const artifacts = artifactsDir();

  const { page, console: consoleLines, close } = await launchBrowser();
  const qidoRequests = [];
  page.on('request', (request) => {
    if (request.url().includes('/studies?')) qidoRequests.push(request.url());
  });
  try {
    const startedMs = Date.now();
    const response = await page.goto(`${baseUrl}/ohif/`);
    assert.equal(response.status(), 200, 'GET /ohif/');
    const identity = patientName ?? patientId;
    const row = page.locator('tbody tr').filter({ hasText: identity }).filter({ hasText: description });
    try {
      await row.first().waitFor({ state: 'visible', timeout: timeoutMs });
    } finally {
      await page.screenshot({ path: join(artifacts, 'study-list.png'), fullPage: true });
      writeFileSync(join(artifacts, 'study-list-console.log'), consoleLines.join('\n') + '\n');
    }
    const studyListMs = Date.now() - startedMs;
    writeFileSync(join(artifacts, 'study-list-timing.json'),
      JSON.stringify({ study_list_visible_ms: studyListMs, qido_requests: qidoRequests }, null, 1) + '\n');
    console.log(`study list row visible ${studyListMs} ms after navigation`);

    assert.equal(await row.count(), 1, `one row for ${identity} / ${description}`);
    const cells = (await row.locator('td').allInnerTexts()).map((text) => text.trim());
    const rowText = cells.join(' | ');
    assert.ok(cells.some((c) => c === patientId || (patientName && c === patientName)),
      `patient ${patientName ?? ''} / ${patientId} in ${rowText}`);
    assert.ok(cells.some((c) => c.startsWith(date)), `study date ${date} in ${rowText}`);
    assert.ok(cells.includes(description), `description ${description} in ${rowText}`);
    assert.ok(!rowText.includes('No Description'), rowText);
    assert.ok(cells.some((c) => c.split(/[\\/, ]+/).includes(modality)), `modality ${modality} in ${rowText}`);
    // the search went through OncoFlow's QIDO proxy, not straight to Orthanc's DICOMweb
    assert.ok(qidoRequests.length > 0 && qidoRequests.every((u) => u.startsWith(`${baseUrl}/oncoflow/dicom-web/`)),
      `QIDO requests: ${qidoRequests.join(', ')}`);
  } finally {
    await close();
  }
});
