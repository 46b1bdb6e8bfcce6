// The OncoFlow review mode on a running stack: follow-up beside baseline, the OncoFlow panel, the SEG overlay.
//
// Environment:
//   ONCOFLOW_URL        Orthanc's base URL (required)
//   FOLLOW_UP_UID       the follow-up's StudyInstanceUID (required)
//   BASELINE_UID        its baseline's StudyInstanceUID (required)
//   EXPECT_SR           JSON of the follow-up SR's values, read back from the PACS by the caller (required):
//                       {"volume_prior_cm3", "volume_cm3", "percent_change", "flag"}
//   EXPECT_LESIONS      optional JSON of the follow-up's lesions and response from the timeline route (the caller
//                       checked them against the SR): {"lesions": [...], "baseline_lesions": [...], "response": {...}}
//   ARTIFACTS_DIR       where screenshots, console log and timing go (default ./artifacts)
//   REVIEW_TIMEOUT_MS   how long to wait for each stage (default 90000)
//
// Writes review-timing.json: {first_image_ms, panel_filled_ms} from navigation (what `make bench` reports).
// Run: node --test review-mode.test.mjs
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { artifactsDir, countRedPixels, launchBrowser, requiredEnv, viewportHasImage } from './browser.mjs';

/** Resolves once a cornerstone canvas shows a non-black pixel: the first image is on screen. */
async function waitForFirstImage(page, timeoutMs) {
  await page.waitForFunction(viewportHasImage, null, { timeout: timeoutMs, polling: 250 });
}

/**
 * The lesion table and the response (issue 18) against the route's rows: one row per lesion by tracking ID with
 * its role, measurability, volume and product, its change against the baseline visit, and the RANO response.
 */
async function checkLesions(page, expected) {
  const rows = page.getByTestId('oncoflow-lesion-row');
  await rows.first().waitFor({ state: 'visible', timeout: 30000 });
  const present = await page.locator('[data-testid="oncoflow-lesion-row"]:not([data-status="gone"])').count();
  assert.equal(present, expected.lesions.length, 'one lesion row per lesion of the follow-up');
  const before = new Map((expected.baseline_lesions || []).map((l) => [l.tracking_id, l]));
  for (const lesion of expected.lesions) {
    const row = page.locator(`[data-testid="oncoflow-lesion-row"][data-tracking-id="${lesion.tracking_id}"]`);
    assert.equal(await row.count(), 1, `${lesion.tracking_id}: one row`);
    assert.equal(await row.getAttribute('data-status'), lesion.status);
    assert.equal(await row.getAttribute('data-target'), String(lesion.target));
    assert.equal(await row.getAttribute('data-measurable'), String(lesion.measurable));
    const shown = async (testId) => Number(await row.getByTestId(testId).getAttribute('data-value'));
    const volume = await shown('oncoflow-lesion-volume');
    assert.ok(Math.abs(volume - lesion.volume_cm3) < 1e-6, `${lesion.tracking_id}: panel ${volume} cm³, route ${lesion.volume_cm3}`);
    const product = await shown('oncoflow-lesion-product');
    assert.ok(Math.abs(product - lesion.product_mm2) < 1e-6, `${lesion.tracking_id}: panel ${product} mm², route ${lesion.product_mm2}`);
    const role = await row.getByTestId('oncoflow-lesion-role').innerText();
    assert.ok(role.includes(lesion.target ? ' · target · ' : ' · non-target · '), role);
    assert.ok(role.includes(lesion.measurable ? ' · measurable' : ' · not measurable'), role);
    const vsBaseline = row.getByTestId('oncoflow-lesion-vs-baseline');
    const earlier = before.get(lesion.tracking_id);
    if (earlier && expected.response && expected.response.unit === 'cm3') {
      const change = ((lesion.volume_cm3 - earlier.volume_cm3) / earlier.volume_cm3) * 100;
      const panelChange = Number(await vsBaseline.getAttribute('data-value'));
      assert.ok(Math.abs(panelChange - change) < 0.01, `${lesion.tracking_id}: panel ${panelChange} %, route rows ${change} %`);
    } else if (!earlier && lesion.status === 'new') {
      assert.equal(await vsBaseline.getAttribute('data-kind'), 'new');
    }
  }
  if (expected.response) {
    const box = page.getByTestId('oncoflow-response');
    await box.waitFor({ state: 'visible', timeout: 30000 });
    assert.equal(await box.getAttribute('data-category'), expected.response.category);
    assert.equal(await box.getAttribute('data-confirmation'), expected.response.confirmation);
    assert.equal(await box.getAttribute('data-criteria'), expected.response.criteria);
    const reasons = await page.getByTestId('oncoflow-response-reason').allInnerTexts();
    assert.deepEqual(reasons, expected.response.reasons);
    const sum = Number(await page.getByTestId('oncoflow-response-target-sum').getAttribute('data-value'));
    assert.ok(Math.abs(sum - expected.response.target_sum) < 1e-6, `target sum: panel ${sum}, route ${expected.response.target_sum}`);
  }
  await page.getByTestId('oncoflow-lesions').first().screenshot({ path: join(artifactsDir(), 'oncoflow-lesions.png') });
}

test('the OncoFlow review mode shows the SR numbers, the flag and the SEG overlay', async () => {
  const baseUrl = requiredEnv('ONCOFLOW_URL').replace(/\/$/, '');
  const followUp = requiredEnv('FOLLOW_UP_UID');
  const baseline = requiredEnv('BASELINE_UID');
  const expected = JSON.parse(requiredEnv('EXPECT_SR'));
  const timeoutMs = Number(process.env.REVIEW_TIMEOUT_MS || 90000);
  const artifacts = artifactsDir();
  const { page, console: consoleLines, close } = await launchBrowser({ viewport: { width: 1600, height: 1000 } });
  const timing = {};
  try {
    const startedMs = Date.now();
    const response = await page.goto(`${baseUrl}/ohif/oncoflow-review?StudyInstanceUIDs=${followUp},${baseline}`);
    assert.equal(response.status(), 200);
    try {
      await waitForFirstImage(page, timeoutMs);
      timing.first_image_ms = Date.now() - startedMs;
      const flag = page.getByTestId('oncoflow-flag');
      await flag.waitFor({ state: 'visible', timeout: timeoutMs });
      await page.waitForFunction(() => {
        const element = document.querySelector('[data-testid="oncoflow-flag"]');
        return element && element.getAttribute('data-value');
      }, null, { timeout: timeoutMs });
      timing.panel_filled_ms = Date.now() - startedMs;
    } finally {
      await page.screenshot({ path: join(artifacts, 'review-mode.png') });
      writeFileSync(join(artifacts, 'review-console.log'), consoleLines.join('\n') + '\n');
      writeFileSync(join(artifacts, 'review-timing.json'), JSON.stringify(timing, null, 1) + '\n');
    }
    console.log(`first image ${timing.first_image_ms} ms, panel filled ${timing.panel_filled_ms} ms`);

    // the panel shows the SR's numbers (data-value carries the route's raw value beside the formatted text)
    const value = async (testId) => page.getByTestId(testId).first().getAttribute('data-value');
    assert.equal(await value('oncoflow-flag'), expected.flag);
    assert.ok(Math.abs(Number(await value('oncoflow-volume-baseline')) - expected.volume_prior_cm3) < 1e-3);
    assert.ok(Math.abs(Number(await value('oncoflow-volume-follow-up')) - expected.volume_cm3) < 1e-3);
    assert.ok(Math.abs(Number(await value('oncoflow-percent-change')) - expected.percent_change) < 0.01);
    assert.ok((await page.getByTestId('oncoflow-flag').first().innerText()).includes(expected.flag));
    assert.ok((await page.getByTestId('oncoflow-expert-row').count()) >= 1);
    // one row per region the SR holds, with the SR's volume; the measured one marked
    const regionRows = page.getByTestId('oncoflow-region-row');
    assert.equal(await regionRows.count(), Object.keys(expected.region_volumes_cm3).length);
    for (const [region, volume] of Object.entries(expected.region_volumes_cm3)) {
      const row = page.locator(`[data-testid="oncoflow-region-row"][data-region="${region}"]`).first();
      const shown = Number(await row.getByTestId('oncoflow-region-volume').getAttribute('data-value'));
      assert.ok(Math.abs(shown - volume) < 1e-3, `${region}: panel ${shown} cm³, SR ${volume} cm³`);
      assert.equal(await row.getAttribute('data-measured'), region === expected.region ? 'true' : 'false');
    }
    if (process.env.EXPECT_LESIONS) {
      await checkLesions(page, JSON.parse(process.env.EXPECT_LESIONS));
    }
    const reportLink = await page.getByTestId('oncoflow-report-link').first().getAttribute('href');
    assert.match(reportLink, /\/oncoflow\/reports\/[0-9.]+\.pdf$/);
    const pdf = await page.request.get(new URL(reportLink, baseUrl).toString());
    assert.equal(pdf.status(), 200);
    assert.ok((await pdf.body()).subarray(0, 5).toString() === '%PDF-');
    await page.getByTestId('oncoflow-panel').first().screenshot({ path: join(artifacts, 'oncoflow-panel.png') });

    // a radiologist's gesture: make the follow-up viewport (right) active, double-click the follow-up's
    // ensemble SEG in the study browser (the current study's group comes first), accept OHIF's prompt
    const viewports = page.locator('canvas.cornerstone-canvas');
    await viewports.nth(1).click();
    await page.getByText('OncoFlow SEG ensemble', { exact: false }).first().dblclick();
    const yes = page.getByRole('button', { name: 'Yes' });
    try {
      await yes.first().waitFor({ state: 'visible', timeout: 15000 });
      await yes.first().click();
    } catch {
      // no prompt: OHIF loaded the SEG directly
    }
    // the ensemble SEG (red) is drawn over the images: red pixels in screenshots of the viewports only
    // (the panel's flag may be red too)
    let red = 0;
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      red = 0;
      for (let i = 0; i < (await viewports.count()); i += 1) {
        red += await countRedPixels(page, await viewports.nth(i).screenshot());
      }
      if (red > 40) break;
      await page.waitForTimeout(1000);
    }
    await page.screenshot({ path: join(artifacts, 'review-mode-seg.png') });
    assert.ok(red > 40, `red SEG pixels in the viewports: ${red}`);
  } finally {
    writeFileSync(join(artifacts, 'review-console.log'), consoleLines.join('\n') + '\n');
    await close();
  }
});
