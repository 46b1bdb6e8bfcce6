// OHIF's study list at /ohif/ shows patient names in any script (Hebrew, Arabic, Cyrillic, Chinese, Latin-1
// accents), in headless Chromium, on a running OncoFlow stack with login off.
//
// Environment:
//   ONCOFLOW_URL              Orthanc's base URL, e.g. http://127.0.0.1:8042 (required)
//   EXPECT_ROWS               JSON list of {"patient_id": ..., "shown_name": ...}: for each PatientID, the row's
//                             patient cell must read shown_name exactly (required)
//   ARTIFACTS_DIR             where the screenshot, the page's text and the console log go (default ./artifacts)
//   STUDY_LIST_TIMEOUT_MS     how long to wait for each row (default 60000)
//
// Run: node --test character-sets.test.mjs
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { artifactsDir, launchBrowser, requiredEnv } from './browser.mjs';

test('the OHIF study list keeps patient names in every script', async () => {
  const baseUrl = requiredEnv('ONCOFLOW_URL').replace(/\/$/, '');
  const rows = JSON.parse(requiredEnv('EXPECT_ROWS'));
  assert.ok(Array.isArray(rows) && rows.length > 0, 'EXPECT_ROWS names no row');
  const timeoutMs = Number(process.env.STUDY_LIST_TIMEOUT_MS || 60000);
  const artifacts = artifactsDir();

  const { page, console: consoleLines, close } = await launchBrowser({ viewport: { width: 1600, height: 1000 } });
  try {
    const response = await page.goto(`${baseUrl}/ohif/`);
    assert.equal(response.status(), 200, 'GET /ohif/');
    const found = {};
    try {
      for (const { patient_id: patientId } of rows) {
        const row = page.locator('tbody tr').filter({ hasText: patientId });
        await row.first().waitFor({ state: 'visible', timeout: timeoutMs });
        assert.equal(await row.count(), 1, `one row for PatientID ${patientId}`);
        found[patientId] = (await row.locator('td').allInnerTexts()).map((text) => text.trim());
      }
    } finally {
      await page.screenshot({ path: join(artifacts, 'character-sets.png'), fullPage: true });
      writeFileSync(join(artifacts, 'character-sets-page.txt'), await page.locator('body').innerText());
      writeFileSync(join(artifacts, 'character-sets-console.log'), consoleLines.join('\n') + '\n');
      writeFileSync(join(artifacts, 'character-sets-rows.json'), JSON.stringify(found, null, 1) + '\n');
    }
    for (const { patient_id: patientId, shown_name: shownName } of rows) {
      const cells = found[patientId];
      assert.ok(cells.includes(shownName), `patient name ${shownName} in the row of ${patientId}: ${cells.join(' | ')}`);
    }
  } finally {
    await close();
  }
});
