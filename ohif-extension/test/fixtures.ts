/**
 * Realistic payloads of OncoFlow's routes, shaped like the plugin's answers
 * (`Job.as_json` + history/refinements, `PatientTimeline` rows, `Comparison.as_json`).
 */

import type { Comparison, LesionRecord, PatientTimeline, ResponseAssessment, StudyJob, TimePoint } from '../src/api';

export const PATIENT_ID = 'ONC 001/A';
export const BASELINE_UID = '1.2.826.0.1.3680043.8.498.1001';
export const FOLLOW_UP_UID = '1.2.826.0.1.3680043.8.498.1002';
export const THIRD_UID = '1.2.826.0.1.3680043.8.498.1003';

// A rigid shift of 4 mm in x and -2 mm in z, row-major like numpy's reshape(-1).
export const FOLLOW_UP_TO_BASELINE = [1, 0, 0, 4, 0, 1, 0, 0, 0, 0, 1, -2, 0, 0, 0, 1];

export function comparison(overrides: Partial<Comparison> = {}): Comparison {
  return {
    baseline_study_instance_uid: BASELINE_UID,
    follow_up_study_instance_uid: FOLLOW_UP_UID,
    days_between: 91,
    volume_baseline_cm3: 12.345,
    volume_follow_up_cm3: 16.02,
    delta_cm3: 3.675,
    percent_change: 29.77,
    percent_change_ci95: [24.1, 35.42],
    delta_ci95_cm3: [2.97, 4.37],
    dice: 0.7312,
    hd95_mm: 4.12,
    growth_rate_cm3_per_day: 0.04038,
    longest_axial_diameter_mm: [31.2, 34.8],
    max_caliper_mm: [33.0, 36.9],
    registration: { method: 'elastix', ncc_before: 0.4123, ncc_after: 0.9377, seconds: 1.42, resegmented: false },
    flag: 'progression',
    flag_reason: 'volume +29.8% > +25%',
    follow_up_to_baseline_lps: FOLLOW_UP_TO_BASELINE,
    ...overrides,
  };
}

export function baselineTimePoint(overrides: Partial<TimePoint> = {}): TimePoint {
  return {
    study_instance_uid: BASELINE_UID,
    study_date: '2024-01-15',
    baseline_study_instance_uid: null,
    error: null,
    measurements: {
      volume_cm3: 12.345,
      volume_ci95_cm3: [11.8, 12.9],
      experts_mean_volume_cm3: 12.35,
      longest_axial_diameter_mm: 31.2,
      max_caliper_mm: 33.0,
    },
    comparison: null,
    seg_sop_instance_uid: '1.2.826.0.1.3680043.8.498.2001',
    sr_sop_instance_uid: '1.2.826.0.1.3680043.8.498.3001',
    reg_sop_instance_uid: null,
    report_sop_instance_uid: '1.2.826.0.1.3680043.8.498.4001',
    report_error: null,
    ...overrides,
  };
}

export function followUpTimePoint(overrides: Partial<TimePoint> = {}): TimePoint {
  return {
    study_instance_uid: FOLLOW_UP_UID,
    study_date: '2024-04-15',
    baseline_study_instance_uid: BASELINE_UID,
    error: null,
    measurements: {
      volume_cm3: 16.02,
      volume_ci95_cm3: [15.1, 16.9],
      experts_mean_volume_cm3: 16.0,
      longest_axial_diameter_mm: 34.8,
      max_caliper_mm: 36.9,
    },
    comparison: comparison(),
    seg_sop_instance_uid: '1.2.826.0.1.3680043.8.498.2002',
    sr_sop_instance_uid: '1.2.826.0.1.3680043.8.498.3002',
    reg_sop_instance_uid: '1.2.826.0.1.3680043.8.498.5002',
    report_sop_instance_uid: '1.2.826.0.1.3680043.8.498.4002',
    report_error: null,
    ...overrides,
  };
}

export function timeline(points: TimePoint[] = [baselineTimePoint(), followUpTimePoint()]): PatientTimeline {
  return { patient_id: PATIENT_ID, baseline_rule: 'previous', time_points: points };
}

export function doneJob(studyUid: string = FOLLOW_UP_UID, overrides: Partial<StudyJob> = {}): StudyJob {
  return {
    job_id: 7,
    study_instance_uid: studyUid,
    state: 'done',
    error: null,
    attempts: 1,
    trigger: 'stable-study',
    created_at: 1_713_171_600,
    updated_at: 1_713_171_640,
    timings_s: { select: 0.012, build: 0.41, panel: 5.3, seg_encode: 0.2, store: 0.33, longitudinal: 3.1 },
    outputs: {
      tumour_volume_cm3: 16.02,
      fusion: { strategy: 'staple', agreement_score: 0.8731, flag: 'high', volume_cm3: 16.02, runtime_s: 0.12 },
      driving_region: 'TC',
      regions: {
        WT: { name: 'Whole tumour', volume_cm3: 41.5, agreement_score: null, flag: 'single expert', experts: ['nnunet_demo'] },
        TC: { name: 'Tumour core', volume_cm3: 16.02, agreement_score: 0.8731, flag: 'high', experts: ['nnunet_demo', 'threshold'] },
      },
      panel: {
        ran: ['nnunet_demo', 'threshold'],
        skipped: { sam2: 'not ready: checkpoint missing' },
        wall_s: 5.3,
        experts_s: 4.9,
      },
      experts: {
        nnunet_demo: {
          role: 'segmenter',
          status: 'ran',
          reason: null,
          version: '2.8.1-demo',
          runtime_s: 1.6,
          volume_cm3: 16.4,
          dice_vs_fused: 0.9412,
          iou_vs_fused: 0.8889,
        },
        threshold: {
          role: 'segmenter',
          status: 'ran',
          reason: null,
          version: '1.0',
          runtime_s: 0.05,
          volume_cm3: 15.1,
          dice_vs_fused: 0.8123,
          iou_vs_fused: 0.6838,
        },
        sam2: { role: 'promptable', status: 'skipped', reason: 'not ready: checkpoint missing', version: null, runtime_s: null },
      },
      longitudinal: {
        sr_sop_instance_uid: '1.2.826.0.1.3680043.8.498.3002',
        baseline_study_instance_uid: BASELINE_UID,
        comparison: comparison(),
        report: { report_sop_instance_uid: '1.2.826.0.1.3680043.8.498.4002', report_s: 0.8 },
      },
    },
    events: [
      { at: 1_713_171_600, message: 'queued (stable-study)' },
      { at: 1_713_171_601, message: 'running (attempt 1)' },
      { at: 1_713_171_607, message: 'expert sam2 skipped: not ready: checkpoint missing' },
      { at: 1_713_171_640, message: 'done' },
    ],
    history: [{ job_id: 7, state: 'done', error: null, trigger: 'stable-study', created_at: 1_713_171_600 }],
    refinements: [],
    ...overrides,
  };
}

export function runningJob(studyUid: string = FOLLOW_UP_UID): StudyJob {
  return {
    ...doneJob(studyUid),
    job_id: 8,
    state: 'running',
    timings_s: { select: 0.012 },
    outputs: {},
    events: [
      { at: 1_713_171_600, message: 'queued (reanalyse)' },
      { at: 1_713_171_601, message: 'running (attempt 1)' },
    ],
  };
}

export function failedJob(studyUid: string = FOLLOW_UP_UID): StudyJob {
  return {
    ...doneJob(studyUid),
    job_id: 9,
    state: 'failed',
    error: 'no usable MR series: every series has fewer than 8 slices',
    timings_s: { select: 0.02 },
    outputs: {},
    events: [
      { at: 1_713_171_600, message: 'queued (stable-study)' },
      { at: 1_713_171_601, message: 'running (attempt 1)' },
      { at: 1_713_171_602, message: 'failed: no usable MR series: every series has fewer than 8 slices' },
    ],
  };
}

// -- lesion by lesion (issue 18) -------------------------------------------------------------

/** One lesion row as `lesion_tracking.lesion_row` writes it. */
export function lesion(trackingId: string, volumeCm3: number, productMm2: number, overrides: Partial<LesionRecord> = {}): LesionRecord {
  return {
    label: Number(trackingId.replace(/\D/g, '')) || 1,
    tracking_id: trackingId,
    status: 'continued',
    merged_ids: [],
    split_from: null,
    target: true,
    volume_cm3: volumeCm3,
    longest_diameter_mm: Math.round(Math.sqrt(productMm2) * 12) / 10,
    perpendicular_diameter_mm: Math.round(Math.sqrt(productMm2) * 8) / 10,
    product_mm2: productMm2,
    max_caliper_mm: Math.round(Math.sqrt(productMm2) * 13) / 10,
    measurable: true,
    not_measurable: [],
    centroid_lps_mm: [10.5, -20.25, 30],
    long_axis_lps_mm: [[0, 0, 30], [20, 0, 30]],
    perpendicular_axis_lps_mm: [[10, -8, 30], [10, 8, 30]],
    ...overrides,
  };
}

export function response(overrides: Partial<ResponseAssessment> = {}): ResponseAssessment {
  return {
    criteria: 'RANO 2.0, volumetric',
    category: 'SD',
    confirmation: 'not needed',
    label: 'SD',
    targets: ['Lesion 1', 'Lesion 2'],
    unit: 'cm3',
    target_sum: 15.5,
    baseline_sum: 14,
    nadir_sum: 14,
    change_from_baseline_percent: 10.71,
    change_from_nadir_percent: 10.71,
    reasons: ['sum of target volumes +10.7% from baseline, within -65% to +40%'],
    ...overrides,
  };
}

/**
 * Three visits, two lesions at baseline: Lesion 1 grows (10 -> 12.5 -> 15 cm³), Lesion 2 shrinks
 * (4 -> 3 -> 1 cm³), and Lesion 3 appears at the third visit, too small to measure.
 */
export function lesionTimeline(): PatientTimeline {
  return timeline([
    baselineTimePoint({
      lesions: [
        lesion('Lesion 1', 10, 400, { status: 'baseline' }),
        lesion('Lesion 2', 4, 150, { label: 2, status: 'baseline' }),
      ],
      response: null,
    }),
    followUpTimePoint({
      lesions: [lesion('Lesion 1', 12.5, 480), lesion('Lesion 2', 3, 120, { label: 2 })],
      response: response(),
    }),
    followUpTimePoint({
      study_instance_uid: THIRD_UID,
      study_date: '2024-07-15',
      baseline_study_instance_uid: FOLLOW_UP_UID,
      measurements: { volume_cm3: 16.8, volume_ci95_cm3: [16.1, 17.5], experts_mean_volume_cm3: 16.8, longest_axial_diameter_mm: 38, max_caliper_mm: 40 },
      lesions: [
        lesion('Lesion 1', 15, 560),
        lesion('Lesion 2', 1, 50, { label: 2 }),
        lesion('Lesion 3', 0.8, 30, {
          label: 3,
          status: 'new',
          target: false,
          measurable: false,
          not_measurable: ['longest diameter 6.6 mm < 10 mm'],
        }),
      ],
      response: response({
        category: 'PD',
        confirmation: 'preliminary',
        label: 'PD (preliminary)',
        target_sum: 16,
        change_from_baseline_percent: 14.29,
        change_from_nadir_percent: 14.29,
        reasons: ['new lesion: Lesion 3', 'sum of target volumes +14.3% from the nadir'],
      }),
    }),
  ]);
}
