/** An approved segmentation, a job with automatic and refined SEGs, the study's SEGs and the route's 422 texts. */
import type { SegmentationApproval, StudySeg } from '../src/api';
import { doneJob, FOLLOW_UP_UID } from './fixtures';

export const ENSEMBLE = '1.2.826.0.1.3680043.8.498.2001';
export const EXPERT = '1.2.826.0.1.3680043.8.498.2002';
export const BRAIN = '1.2.826.0.1.3680043.8.498.2050';
export const REFINED_1 = '1.2.826.0.1.3680043.8.498.2101';
export const REFINED_2 = '1.2.826.0.1.3680043.8.498.2102';
export const OHIF_SEG = '2.25.99887766554433221100';
// 2026-03-01 10:15:00 UTC
export const APPROVED_AT = 1_772_360_100;

export const APPROVAL: SegmentationApproval = {
  approval_id: 3,
  study_instance_uid: FOLLOW_UP_UID,
  sop_instance_uid: REFINED_2,
  series_instance_uid: '1.2.826.0.1.3680043.8.498.2102.1',
  segment_numbers: [1],
  source: 'refined SEG v2',
  input_series_instance_uid: '1.2.3.4',
  volume_cm3: 15.8,
  approved_by: 'alice',
  approved_role: 'radiologist',
  approved_at: APPROVED_AT,
  withdrawn_by: null,
  withdrawn_at: null,
};

/** A job with an ensemble, an expert and a brain SEG, and two refined versions. */
export function jobWithSegs() {
  const job = doneJob();
  return doneJob(FOLLOW_UP_UID, {
    outputs: {
      ...job.outputs,
      ensemble_seg_sop_instance_uid: ENSEMBLE,
      seg_sop_instance_uids: [ENSEMBLE, EXPERT, BRAIN],
      experts: { ...job.outputs.experts, threshold: { ...job.outputs.experts?.threshold, status: 'ran', reason: null, version: '1', runtime_s: 1, seg_sop_instance_uid: EXPERT } },
    },
    refinements: [
      { version: 1, sop_instance_uid: REFINED_1, volume_cm3: 14.2, created_at: 1 },
      { version: 2, sop_instance_uid: REFINED_2, volume_cm3: 15.8, created_at: 2 },
    ],
  });
}

export function seg(sopInstanceUid: string, seriesDescription: string | null, manufacturer: string | null, seriesNumber: number | null = null): StudySeg {
  return { sopInstanceUid, seriesInstanceUid: `${sopInstanceUid}.1`, seriesDescription, manufacturer, seriesNumber };
}

export const STUDY_SEGS: StudySeg[] = [
  seg(ENSEMBLE, 'OncoFlow SEG staple', 'OncoFlow', 9001),
  seg(EXPERT, 'OncoFlow SEG threshold', 'OncoFlow', 9003),
  seg(BRAIN, 'OncoFlow SEG brain', 'OncoFlow', 9050),
  seg('1.2.826.0.1.3680043.8.498.2999', 'OncoFlow SEG staple', 'OncoFlow', 9001), // an earlier run's ensemble
  seg(REFINED_1, 'OncoFlow SEG refined v1 (sam2)', 'OncoFlow', 9101),
  seg(REFINED_2, 'OncoFlow SEG refined v2 (sam2)', 'OncoFlow', 9102),
  seg(OHIF_SEG, 'Tumour (edited)', 'OHIF', 300),
  seg('2.25.1', null, null),
];

// the route's 422 messages (oncoflow/dicom/stored_seg.py tumour_segments)
export const SEVERAL =
  "the SEG has 2 segments (1 'Segment 1' (Neoplasm), 2 'Peritumoral edema' (Edema)) and none is the tumour region TC by its " +
  'code and label: name the tumour\'s segments in "segment_numbers"';
export const MISSING = "the SEG has no segment [3]; its segments: 1 'Segment 1' (Neoplasm), 2 'Dr. O'Neil's core' (Tumor), 4 'Brain' (Brain)";
// ... and their JSON bodies, which list the SEG's segments as data (oncoflow/pipeline/approved_segmentation.py)
export const SEVERAL_BODY = {
  error: SEVERAL,
  segments: [
    { number: 1, label: 'Segment 1', meaning: 'Neoplasm' },
    { number: 2, label: 'Peritumoral edema', meaning: 'Edema' },
  ],
};
export const MISSING_BODY = {
  error: MISSING,
  segments: [
    { number: 1, label: 'Segment 1', meaning: 'Neoplasm' },
    { number: 2, label: "Dr. O'Neil's core", meaning: 'Tumor' },
    { number: 4, label: 'Brain', meaning: 'Brain' },
  ],
};

