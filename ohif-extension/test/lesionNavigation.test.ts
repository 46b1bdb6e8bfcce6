import { describe, expect, it } from 'vitest';
import {
  chooseVoi,
  largestTargetLesion,
  matchingLesion,
  modalityPixels,
  nearestSlice,
  pixelPercentiles,
  planLesionJump,
  type ImagePlane,
} from '../src/lesionNavigation';
import { baselineTimePoint, BASELINE_UID, followUpTimePoint, FOLLOW_UP_UID, lesion, lesionTimeline, THIRD_UID, timeline } from './fixtures';

const VIEWPORTS = [
  { viewportId: 'oncoflow-baseline', studyInstanceUid: BASELINE_UID },
  { viewportId: 'oncoflow-follow-up', studyInstanceUid: FOLLOW_UP_UID },
];

describe('which lesion the viewer opens on', () => {
  it('takes the largest target lesion, not a larger non-target one', () => {
    const rows = [
      lesion('Lesion 1', 3, 100),
      lesion('Lesion 2', 7.5, 200),
      lesion('Lesion 3', 20, 500, { target: false }),
      lesion('Lesion 4', 7.4, 300),
    ];
    expect(largestTargetLesion(rows)?.tracking_id).toBe('Lesion 2');
  });

  it('falls back to the largest lesion without targets, and to null without lesions', () => {
    expect(largestTargetLesion([lesion('Lesion 1', 1, 10, { target: false }), lesion('Lesion 2', 2, 10, { target: false })])?.tracking_id).toBe(
      'Lesion 2',
    );
    expect(largestTargetLesion([])).toBeNull();
    expect(largestTargetLesion(null)).toBeNull();
  });

  it('finds a lesion in another visit by tracking ID, else what it merged into, else its largest part', () => {
    const rows = [
      lesion('Lesion 1', 5, 100, { merged_ids: ['Lesion 4'] }),
      lesion('Lesion 5', 1, 40, { split_from: 'Lesion 2' }),
      lesion('Lesion 6', 2, 60, { split_from: 'Lesion 2' }),
    ];
    expect(matchingLesion(rows, 'Lesion 1')?.tracking_id).toBe('Lesion 1');
    expect(matchingLesion(rows, 'Lesion 4')?.tracking_id).toBe('Lesion 1');
    expect(matchingLesion(rows, 'Lesion 2')?.tracking_id).toBe('Lesion 6');
    expect(matchingLesion(rows, 'Lesion 9')).toBeNull();
  });
});

describe('where each viewport goes', () => {
  const twoVisits = () =>
    timeline([
      baselineTimePoint({ lesions: [lesion('Lesion 1', 10, 400, { centroid_lps_mm: [-12, 30, 32] }), lesion('Lesion 2', 12, 400, { centroid_lps_mm: [20, 5, 10] })] }),
      followUpTimePoint({
        lesions: [
          lesion('Lesion 1', 14, 500, { centroid_lps_mm: [-5, 35, 34] }),
          lesion('Lesion 2', 9, 300, { centroid_lps_mm: [21, 6, 12] }),
          lesion('Lesion 3', 16, 90, { status: 'new', target: false, centroid_lps_mm: [0, -30, 50] }),
        ],
      }),
    ]);

  it('opens both viewports on the current visit’s largest target lesion, each at its own visit’s centroid', () => {
    const jump = planLesionJump(twoVisits(), VIEWPORTS, FOLLOW_UP_UID);
    expect(jump?.trackingId).toBe('Lesion 1'); // 14 cm³: Lesion 3 is larger but not a target; Lesion 2 is larger only at baseline
    expect(jump?.targets).toEqual([
      { viewportId: 'oncoflow-baseline', studyInstanceUid: BASELINE_UID, positionMm: [-12, 30, 32], source: 'own' },
      { viewportId: 'oncoflow-follow-up', studyInstanceUid: FOLLOW_UP_UID, positionMm: [-5, 35, 34], source: 'own' },
    ]);
  });

  it('uses the follow-up’s centroid in the baseline viewport when the baseline lacks the lesion', () => {
    const jump = planLesionJump(twoVisits(), VIEWPORTS, FOLLOW_UP_UID, 'Lesion 3');
    expect(jump?.targets.map((t) => [t.positionMm, t.source])).toEqual([
      [[0, -30, 50], 'other'],
      [[0, -30, 50], 'own'],
    ]);
  });

  it('goes to a lesion gone since the baseline at the baseline’s centroid in both viewports', () => {
    const data = twoVisits();
    data.time_points[1]!.lesions = data.time_points[1]!.lesions!.filter((l) => l.tracking_id !== 'Lesion 2');
    const jump = planLesionJump(data, VIEWPORTS, FOLLOW_UP_UID, 'Lesion 2');
    expect(jump?.targets.map((t) => [t.positionMm, t.source])).toEqual([
      [[20, 5, 10], 'own'],
      [[20, 5, 10], 'other'],
    ]);
  });

  it('plans nothing without a timeline, lesions, or the lesion in any visit shown', () => {
    expect(planLesionJump(null, VIEWPORTS, FOLLOW_UP_UID)).toBeNull();
    expect(planLesionJump(timeline(), VIEWPORTS, FOLLOW_UP_UID)).toBeNull(); // analysed before lesion tracking
    expect(planLesionJump(twoVisits(), VIEWPORTS, FOLLOW_UP_UID, 'Lesion 9')).toBeNull();
    expect(planLesionJump(twoVisits(), VIEWPORTS, null)).toBeNull();
  });

  it('works on the fixture’s three visits (third visit current, second as the other viewport)', () => {
    const jump = planLesionJump(lesionTimeline(), [
      { viewportId: 'a', studyInstanceUid: FOLLOW_UP_UID },
      { viewportId: 'b', studyInstanceUid: THIRD_UID },
    ], THIRD_UID);
    expect(jump?.trackingId).toBe('Lesion 1');
    expect(jump?.targets.every((t) => t.source === 'own')).toBe(true);
  });
});

describe('which slice', () => {
  // axial slices 3 mm apart from z = -30 (feet first order does not matter)
  const axial = (z: number): ImagePlane => ({ imagePositionPatient: [-100, -100, z], rowCosines: [1, 0, 0], columnCosines: [0, 1, 0] });

  it('picks the slice whose plane is nearest the point, by distance along the normal', () => {
    const planes = [-30, -27, -24, -21, -18].map(axial);
    expect(nearestSlice(planes, [55, -70, -22.9])).toEqual({ index: 2, distanceMm: expect.closeTo(1.1, 6) });
    expect(nearestSlice([...planes].reverse(), [0, 0, -29])).toMatchObject({ index: 4 });
    // the in-plane offset does not count
    expect(nearestSlice(planes, [900, 900, -18])).toEqual({ index: 4, distanceMm: 0 });
  });

  it('handles oblique planes and skips images without geometry', () => {
    const c = Math.SQRT1_2;
    const oblique = (t: number): ImagePlane => ({ imagePositionPatient: [0, t * c, t * c], rowCosines: [1, 0, 0], columnCosines: [0, c, -c] });
    // normal = row × column = (0, c, c): the plane through t along the normal
    expect(nearestSlice([oblique(0), null, oblique(4), oblique(8)], [5, 3 * c, 3 * c])).toMatchObject({ index: 2 });
    expect(nearestSlice([null, undefined], [0, 0, 0])).toBeNull();
  });
});

describe('which window', () => {
  it('computes the 1st and 99th percentiles', () => {
    const ramp = Float32Array.from({ length: 101 }, (_, i) => i * 10); // 0..1000
    expect(pixelPercentiles(ramp)).toEqual({ p1: 10, p99: 990, min: 0, max: 1000 });
    expect(pixelPercentiles([Number.NaN])).toBeNull();
  });

  it('takes the pixels’ 1st–99th percentiles when the image has no window (never W 1 / L 1)', () => {
    const slice = new Uint16Array(10000);
    for (let i = 0; i < slice.length; i += 1) {
      slice[i] = i < 5000 ? 0 : 200 + (i % 800); // background and tissue 200..999
    }
    slice[9999] = 30000; // one hot pixel does not set the top
    const voi = chooseVoi({ pixels: slice });
    expect(voi?.source).toBe('percentiles');
    expect(voi?.lower).toBe(0);
    expect(voi?.upper).toBeGreaterThan(900);
    expect(voi?.upper).toBeLessThan(1000);
  });

  it('keeps a sane DICOM window and refuses W 1 / L 1 or one outside the pixels', () => {
    const pixels = Float32Array.from({ length: 1000 }, (_, i) => i);
    expect(chooseVoi({ windowCenter: [400, 600], windowWidth: [600, 100], pixels })).toEqual({ lower: 100, upper: 700, source: 'dicom' });
    expect(chooseVoi({ windowCenter: 1, windowWidth: 1, pixels })?.source).toBe('percentiles');
    expect(chooseVoi({ windowCenter: 50000, windowWidth: 400, pixels })?.source).toBe('percentiles');
    expect(chooseVoi({ windowCenter: 300, windowWidth: 200, pixels: null })).toEqual({ lower: 200, upper: 400, source: 'dicom' });
  });

  it('widens a flat slice and gives up without pixels', () => {
    expect(chooseVoi({ pixels: new Uint8Array(64) })).toEqual({ lower: -0.5, upper: 0.5, source: 'range' });
    const mostlyFlat = new Uint8Array(1000);
    mostlyFlat[0] = 200;
    expect(chooseVoi({ pixels: mostlyFlat })).toEqual({ lower: 0, upper: 200, source: 'range' });
    expect(chooseVoi({ pixels: null })).toBeNull();
  });

  it('rescales stored values unless the loader already did', () => {
    expect(Array.from(modalityPixels([0, 10], { slope: 2, intercept: -5 }))).toEqual([-5, 15]);
    const scaled = [0, 10];
    expect(modalityPixels(scaled, { scaled: true, slope: 2, intercept: -5 })).toBe(scaled);
    expect(modalityPixels(scaled, {})).toBe(scaled);
  });
});
