/**
 * Baseline | follow-up hanging protocol for two studies, with linked scrolling.
 *
 * OHIF numbers the studies of `StudyInstanceUIDs=a,b` in URL order (`studyInstanceUIDsIndex`
 * 0 = a = the "current" study, 1 = b = the "prior"); OncoFlow opens
 * `StudyInstanceUIDs=<follow-up>,<baseline>`, so index 1 is the baseline. The layout puts
 * the baseline left and the follow-up right (OHIF's own `@ohif/hpCompare` puts index 0 left).
 * It only matches when a second study is open (`from: 'prior'`), so a single study falls
 * back to OHIF's `default` protocol.
 *
 * Both viewports join an `imageSlice` synchronizer: cornerstone3D maps the source slice
 * position into the target study through the spatial registration registered for the
 * viewport pair (identity when both share a FrameOfReferenceUID); the panel registers
 * OncoFlow's follow-up -> baseline affine for it. A `zoompan` synchronizer keeps both at the
 * same zoom/pan; window/level is not linked (MR intensities differ between sessions).
 */

import { HANGING_PROTOCOL_ID } from './ids';

export const BASELINE_VIEWPORT_ID = 'oncoflow-baseline';
export const FOLLOW_UP_VIEWPORT_ID = 'oncoflow-follow-up';
export const SLICE_SYNC_GROUP_ID = 'oncoflowSliceSync';
export const ZOOM_PAN_SYNC_GROUP_ID = 'oncoflowZoomPanSync';

/** Index in `StudyInstanceUIDs` of each role. */
export const FOLLOW_UP_STUDY_INDEX = 0;
export const BASELINE_STUDY_INDEX = 1;

function imageSeriesOfStudy(studyIndex: number) {
  return {
    studyMatchingRules: [
      {
        attribute: 'studyInstanceUIDsIndex',
        from: 'options',
        required: true,
        constraint: { equals: { value: studyIndex } },
      },
    ],
    seriesMatchingRules: [
      // MR images only: OncoFlow's own SEG, SR, REG and report (DOC, whose PDF display set counts
      // image frames too) must never be hung in place of the anatomy
      { attribute: 'Modality', constraint: { equals: { value: 'MR' } }, required: true, weight: 5 },
      { attribute: 'numImageFrames', constraint: { greaterThan: { value: 1 } }, required: true, weight: 1 },
      // a series named in the URL (SeriesInstanceUIDs / initialSeriesInstanceUID) wins
      { attribute: 'isDisplaySetFromUrl', constraint: { equals: true }, weight: 20 },
    ],
  };
}

const syncGroups = [
  { type: 'imageSlice', id: SLICE_SYNC_GROUP_ID, source: true, target: true },
  { type: 'zoompan', id: ZOOM_PAN_SYNC_GROUP_ID, source: true, target: true },
  // OHIF's default: a SEG loaded in one viewport is offered in viewports of the same frame of reference
  { type: 'hydrateseg', id: 'sameFORId', source: true, target: true, options: { matchingRules: ['sameFOR'] } },
];

function viewport(viewportId: string, displaySetId: string) {
  return {
    viewportOptions: {
      viewportId,
      viewportType: 'stack',
      toolGroupId: 'default',
      allowUnmatchedView: true,
      syncGroups,
    },
    displaySets: [{ id: displaySetId }],
  };
}

export const baselineFollowUpProtocol = {
  id: HANGING_PROTOCOL_ID,
  name: 'OncoFlow: baseline | follow-up',
  description: 'Baseline (left) and follow-up (right) side by side, scrolling linked through OncoFlow’s registration',
  numberOfPriorsReferenced: 1,
  protocolMatchingRules: [
    {
      id: 'Two studies',
      weight: 1000,
      attribute: 'StudyInstanceUID',
      from: 'prior',
      required: true,
      constraint: { notNull: true },
    },
  ],
  toolGroupIds: ['default'],
  displaySetSelectors: {
    baselineDisplaySet: imageSeriesOfStudy(BASELINE_STUDY_INDEX),
    followUpDisplaySet: imageSeriesOfStudy(FOLLOW_UP_STUDY_INDEX),
  },
  defaultViewport: {
    viewportOptions: { viewportType: 'stack', toolGroupId: 'default', allowUnmatchedView: true },
    displaySets: [{ id: 'followUpDisplaySet', matchedDisplaySetsIndex: -1 }],
  },
  stages: [
    {
      id: 'baselineFollowUp',
      name: 'Baseline | follow-up',
      stageActivation: { enabled: { minViewportsMatched: 2 } },
      viewportStructure: { layoutType: 'grid', properties: { rows: 1, columns: 2 } },
      viewports: [viewport(BASELINE_VIEWPORT_ID, 'baselineDisplaySet'), viewport(FOLLOW_UP_VIEWPORT_ID, 'followUpDisplaySet')],
    },
  ],
};
