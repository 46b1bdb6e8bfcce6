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
//   EXPECT_SLICES       optional JSON of the images the caller pushed, per study: {StudyInstanceUID: {SOPInstanceUID:
//                       {"position": IPP, "orientation": IOP, "thickness": mm}}}. With EXPECT_LESIONS, the test checks
//                       how the mode opens (issue 18, item 8): each viewport on the slice nearest the largest target
//                       lesion's centroid (baseline: the same lesion's baseline row, else the follow-up's centroid),
//                       the SEG drawn in both without any interaction or prompt, a window other than W 1 / L 1, and a
//                       click on a lesion row taking both viewports (scrolled away first) to that lesion.
//   ARTIFACTS_DIR       where screenshots, console log and timing go (default ./artifacts)
//   REVIEW_TIMEOUT_MS   how long to wait for each stage (default 90000)
//
// Writes review-timing.json: {first_image_ms, panel_filled_ms, on_lesion_ms} from navigation (what `make bench`
// reports; on_lesion_ms only with EXPECT_SLICES).
// Run: node --test review-mode.test.mjs
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { artifactsDir, countRedPixels, launchBrowser, requiredEnv, viewportHasImage } from './browser.mjs';

const VIEWPORTS = { baseline: 'oncoflow-baseline', followUp: 'oncoflow-follow-up' };

/**
 * Where each viewport should be for a lesion of the follow-up, by the rule of issue 18 (the test's own reading of
 * the route's rows): the follow-up at the lesion's centroid, the baseline at the same tracking ID's baseline
 * centroid, or the follow-up's when the baseline has no such lesion.
 */
function expectedCentroids(expected, trackingId) {
  const followUp = expected.lesions.find((l) => l.tracking_id === trackingId);
  const baseline = (expected.baseline_lesions || []).find((l) => l.tracking_id === trackingId);
  return { [VIEWPORTS.followUp]: followUp.centroid_lps_mm, [VIEWPORTS.baseline]: (baseline || followUp).centroid_lps_mm };
}

/** The largest target lesion of the follow-up (by volume; the largest lesion when none is a target). */
function largestTarget(lesions) {
  const targets = lesions.filter((l) => l.target);
  return [...(targets.length ? targets : lesions)].sort((a, b) => b.volume_cm3 - a.volume_cm3)[0];
}

/** Distance (mm) of a point from an image's plane: the plane through its position, normal = row × column cosine. */
function distanceFromPlane(geometry, point) {
  const [r0, r1, r2, c0, c1, c2] = geometry.orientation;
  const n = [r1 * c2 - r2 * c1, r2 * c0 - r0 * c2, r0 * c1 - r1 * c0];
  const length = Math.hypot(...n);
  const d = point.map((v, i) => v - geometry.position[i]);
  return Math.abs((d[0] * n[0] + d[1] * n[1] + d[2] * n[2]) / length);
}

/** In the page: what each viewport shows (its image's SOP Instance UID from the wadors imageId, its VOI, the W/L overlay). */
function viewportStates(viewportIds) {
  return viewportIds.map((viewportId) => {
    const viewport = window.services.cornerstoneViewportService.getCornerstoneViewport(viewportId);
    const imageId = viewport?.getCurrentImageId?.() || '';
    const match = /\/instances\/([0-9.]+)\/frames\//.exec(imageId);
    const element = document.querySelector(`[data-viewportid="${viewportId}"]`);
    const overlay = /W:\s*(-?[\d.]+)\s*L:\s*(-?[\d.]+)/.exec(element?.closest('.viewport-wrapper')?.innerText || '');
    const voi = viewport?.getProperties?.().voiRange || null;
    return {
      viewportId,
      sop: match ? match[1] : null,
      index: viewport?.getCurrentImageIdIndex?.() ?? null,
      voi: voi ? { lower: voi.lower, upper: voi.upper } : null,
      overlay: overlay ? { w: Number(overlay[1]), l: Number(overlay[2]) } : null,
    };
  });
}

/**
 * Whether each viewport has a real window: a VOI wider than 1, not W 1 / L 1 on screen, and the on-screen W equal to
 * the viewport's (the overlay's readout follows the viewport a render later, so this is polled, not read once).
 */
function windowProblems(states) {
  const problems = [];
  for (const state of states) {
    if (!state.voi || !state.overlay) {
      problems.push(`${state.viewportId}: no window (${JSON.stringify(state)})`);
      continue;
    }
    const width = state.voi.upper - state.voi.lower;
    if (width <= 1) problems.push(`${state.viewportId}: window width ${width}`);
    if (state.overlay.w === 1 && state.overlay.l === 1) problems.push(`${state.viewportId}: the viewport shows W 1 / L 1`);
    if (Math.abs(state.overlay.w - width) > 1) problems.push(`${state.viewportId}: overlay W ${state.overlay.w}, viewport ${width}`);
  }
  return problems;
}

/**
 * Whether each viewport shows the slice nearest its point: the shown image's distance from the point is the least
 * over its study's pushed images (to 1 µm) and at most one slice thickness. Returns the problems ([] when all hold).
 */
function sliceProblems(states, centroids, slicesByStudy, studyOf) {
  const problems = [];
  for (const state of states) {
    const slices = slicesByStudy[studyOf[state.viewportId]];
    const shown = state.sop && slices[state.sop];
    if (!shown) {
      problems.push(`${state.viewportId}: shows ${state.sop || 'no image'}, not one of the pushed images`);
      continue;
    }
    const point = centroids[state.viewportId];
    const distance = distanceFromPlane(shown, point);
    const nearest = Math.min(...Object.values(slices).map((g) => distanceFromPlane(g, point)));
    if (distance > nearest + 1e-3 || distance > shown.thickness) {
      problems.push(`${state.viewportId}: slice ${state.index} is ${distance.toFixed(2)} mm from [${point}], nearest ${nearest.toFixed(2)} mm`);
    }
  }
  return problems;
}

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
  // every prompt OHIF shows goes through these services: record each call from the first moment they exist
  await page.addInitScript(() => {
    window.__oncoflowPrompts = [];
    const timer = setInterval(() => {
      const services = window.services;
      if (!services || !services.uiViewportDialogService) return;
      clearInterval(timer);
      for (const name of ['uiViewportDialogService', 'uiModalService', 'uiDialogService']) {
        const service = services[name];
        for (const method of ['show', 'create']) {
          if (!service || typeof service[method] !== 'function') continue;
          const original = service[method].bind(service);
          service[method] = (args) => {
            window.__oncoflowPrompts.push(`${name}.${method}: ${(args && (args.id || args.title || args.message)) || ''}`);
            return original(args);
          };
        }
      }
    }, 5);
  });
  const timing = {};
  const slicesByStudy = process.env.EXPECT_SLICES ? JSON.parse(process.env.EXPECT_SLICES) : null;
  const expectedLesions = process.env.EXPECT_LESIONS ? JSON.parse(process.env.EXPECT_LESIONS) : null;
  const studyOf = { [VIEWPORTS.followUp]: followUp, [VIEWPORTS.baseline]: baseline };
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

    const viewports = page.locator('canvas.cornerstone-canvas');
    /** Red (SEG) pixels in a screenshot of each viewport's canvas (the panel's flag may be red too). */
    const redPerViewport = async () => {
      const counts = {};
      for (const id of Object.values(VIEWPORTS)) {
        const canvas = page.locator(`[data-viewportid="${id}"] canvas.cornerstone-canvas`).first();
        counts[id] = (await canvas.count()) ? await countRedPixels(page, await canvas.screenshot()) : 0;
      }
      return counts;
    };
    const noPrompt = async () => {
      const prompts = await page.evaluate(() => window.__oncoflowPrompts || []);
      assert.deepEqual(prompts, [], `OHIF showed a prompt: ${prompts.join('; ')}`);
      assert.equal(await page.getByRole('button', { name: 'Yes', exact: true }).count(), 0, 'a "Yes" button (OHIF\'s load prompt) is on screen');
    };
    if (slicesByStudy && expectedLesions) {
      // issue 18, item 8: with no interaction at all, both viewports come to rest on the largest target lesion
      // with the ensemble SEG drawn, a real window, and no prompt on the way
      const lesion = largestTarget(expectedLesions.lesions);
      const centroids = expectedCentroids(expectedLesions, lesion.tracking_id);
      let states = [];
      let problems = ['not checked yet'];
      let red = {};
      const deadline = Date.now() + timeoutMs;
      while (Date.now() < deadline) {
        states = await page.evaluate(viewportStates, Object.values(VIEWPORTS));
        problems = [...sliceProblems(states, centroids, slicesByStudy, studyOf), ...windowProblems(states)];
        red = await redPerViewport();
        if (!problems.length && Object.values(red).every((n) => n > 40)) break;
        await page.waitForTimeout(500);
      }
      timing.on_lesion_ms = Date.now() - startedMs;
      writeFileSync(join(artifacts, 'review-timing.json'), JSON.stringify(timing, null, 1) + '\n');
      await page.screenshot({ path: join(artifacts, 'review-mode-on-lesion.png') });
      assert.deepEqual(problems, [], `the viewports did not open on ${lesion.tracking_id}: ${JSON.stringify(states)}`);
      for (const [id, count] of Object.entries(red)) {
        assert.ok(count > 40, `red SEG pixels in ${id} at first load: ${count}`);
      }
      await noPrompt();
      console.log(`on ${lesion.tracking_id} after ${timing.on_lesion_ms} ms: ${JSON.stringify(states)}, red ${JSON.stringify(red)}`);
    }

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

    if (slicesByStudy && expectedLesions) {
      // the visit's clinical state is read for the follow-up (GET …/clinical-state): nothing entered on a fresh study
      const clinical = page.getByTestId('oncoflow-clinical');
      assert.equal(await clinical.getAttribute('data-study-instance-uid'), followUp);
      await page.waitForFunction(() => !document.querySelector('[data-testid="oncoflow-clinical-entered"]')?.textContent.startsWith('Loading'));
      assert.equal(await page.getByTestId('oncoflow-clinical-entered').getAttribute('data-status'), '');
      assert.equal(await page.getByTestId('oncoflow-clinical-status').inputValue(), '');

      // which segmentation is measured (GET …/approved-seg; nothing is approved here): the automatic one, and the
      // study's SEGs (QIDO-RS through the proxy) are all OncoFlow's automatic ones, so none is offered for approval
      const approved = page.getByTestId('oncoflow-approved-seg');
      assert.equal(await approved.getAttribute('data-study-instance-uid'), followUp);
      await page.waitForFunction(() => {
        const measured = document.querySelector('[data-testid="oncoflow-approved-seg-measured"]')?.textContent ?? '';
        const none = document.querySelector('[data-testid="oncoflow-approved-seg-none"]')?.textContent ?? '';
        return !measured.startsWith('Loading') && !none.startsWith('Looking');
      }, null, { timeout: 30000 });
      const measured = page.getByTestId('oncoflow-approved-seg-measured');
      assert.equal(await measured.innerText(), 'Automatic (panel ensemble)');
      assert.equal(await measured.getAttribute('data-kind'), 'automatic');
      assert.match(await measured.getAttribute('data-sop-instance-uid'), /^[0-9.]+$/, 'the automatic SEG measured');
      assert.equal(await page.getByTestId('oncoflow-approved-seg-list-error').count(), 0, 'the study\'s SEGs were listed');
      const found = Number(await approved.getAttribute('data-segs-found'));
      assert.ok(found >= 1, `the QIDO-RS search found ${found} SEGs in the follow-up (its automatic SEGs at least)`);
      assert.equal(await page.getByTestId('oncoflow-approved-seg-candidate').count(), 0, 'an automatic SEG offered for approval');
      assert.equal(await page.getByTestId('oncoflow-approved-seg-message').count(), 0);

      // a lesion row takes both viewports to that lesion: another lesion of the follow-up when there is one, else the
      // same after both were scrolled away from it with the mouse wheel
      const first = largestTarget(expectedLesions.lesions);
      const lesion = expectedLesions.lesions.find((l) => l.tracking_id !== first.tracking_id) || first;
      const before = await page.evaluate(viewportStates, Object.values(VIEWPORTS));
      for (const id of Object.values(VIEWPORTS)) {
        const box = await page.locator(`[data-viewportid="${id}"]`).boundingBox();
        await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
        for (let i = 0; i < 6; i += 1) {
          await page.mouse.wheel(0, 120);
          await page.waitForTimeout(60);
        }
      }
      await page.waitForFunction((wanted) => wanted.every(({ viewportId, index }) =>
        window.services.cornerstoneViewportService.getCornerstoneViewport(viewportId).getCurrentImageIdIndex() !== index),
      before.map(({ viewportId, index }) => ({ viewportId, index })), { timeout: 15000 });
      const centroids = expectedCentroids(expectedLesions, lesion.tracking_id);
      const scrolled = await page.evaluate(viewportStates, Object.values(VIEWPORTS));
      if (lesion === first) {
        assert.equal(sliceProblems(scrolled, centroids, slicesByStudy, studyOf).length, 2, `scrolled away: ${JSON.stringify(scrolled)}`);
      }
      await page.locator(`[data-testid="oncoflow-lesion-row"][data-tracking-id="${lesion.tracking_id}"]`).click();
      let problems = ['not checked yet'];
      let states = [];
      const deadline = Date.now() + 15000;
      while (Date.now() < deadline) {
        states = await page.evaluate(viewportStates, Object.values(VIEWPORTS));
        problems = sliceProblems(states, centroids, slicesByStudy, studyOf);
        if (!problems.length) break;
        await page.waitForTimeout(250);
      }
      assert.deepEqual(problems, [], `the row of ${lesion.tracking_id} did not bring both viewports to it: ${JSON.stringify(states)}`);
      const red = await redPerViewport();
      assert.ok(Object.values(red).every((n) => n > 40), `red SEG pixels after the click: ${JSON.stringify(red)}`);
      await noPrompt();
      await page.screenshot({ path: join(artifacts, 'review-mode-seg.png') });
    } else {
      // no geometry to judge the opening by: the ensemble SEG (red) must still be drawn over the images at once
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
      await noPrompt();
    }
  } finally {
    writeFileSync(join(artifacts, 'review-console.log'), consoleLines.join('\n') + '\n');
    await close();
  }
});
