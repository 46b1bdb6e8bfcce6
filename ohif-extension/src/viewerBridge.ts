/**
 * What the panel needs from the viewer, independent of OHIF: the studies on screen, their
 * PatientID, clicks in patient coordinates, reloading a study's series, linking viewports,
 * showing a SEG over its images, taking viewports to a point with a window of their own.
 * `src/ohif/ohifViewerBridge.ts` implements it over OHIF's services; tests use fakes.
 */

import type { PatientTimeline } from './api';
import type { VoiChoice } from './lesionNavigation';

export type Vec3 = [number, number, number];

export interface ViewerPoint {
  viewportId: string;
  /** The study shown in the clicked viewport, when known. */
  studyInstanceUid: string | null;
  /** Patient coordinates (LPS mm) from the viewport's canvasToWorld. */
  positionMm: Vec3;
  /** False when the click held Shift (a background point). */
  positive: boolean;
}

export interface ViewportStudy {
  viewportId: string;
  studyInstanceUid: string;
}

export interface SeriesShown {
  /** The series has a display set in the viewer now. */
  found: boolean;
  /** It was also put in a viewport. */
  displayed: boolean;
  message: string;
}

/** A spatial registration for linked scrolling: `matrix` maps source LPS mm -> target LPS mm. */
export interface ViewportLink {
  targetViewportId: string;
  sourceViewportId: string;
  /** 4x4, column-major (gl-matrix order, what cornerstone3D expects). */
  matrixColumnMajor: number[];
  description: string;
}

/** Where to take a viewport: the slice nearest a point (LPS mm of its study), or null to stay. */
export interface SliceTarget {
  viewportId: string;
  positionMm: Vec3 | null;
}

/** What `goTo` did in one viewport. */
export interface SliceShown {
  viewportId: string;
  /** The slice shown now (0-based) and how many the viewport has; null / 0 when it has none. */
  sliceIndex: number | null;
  sliceCount: number;
  /** Distance of the point from the slice shown, mm (null without a point). */
  distanceMm: number | null;
  /** The window set from the slice shown (null when not asked or not possible). */
  window: VoiChoice | null;
  /** Empty when all went well, else why not. */
  problem: string;
}

export interface SegmentationShown {
  viewportId: string;
  shown: boolean;
  message: string;
}

export interface ViewerBridge {
  /** The viewer's studies in URL order (`StudyInstanceUIDs=<follow-up>,<baseline>`). */
  studyInstanceUids(): string[];
  /** The study's PatientID from the loaded metadata, else from a QIDO search; null if unknown. */
  patientId(studyInstanceUid: string): Promise<string | null>;
  /** Calls `listener` when display sets or viewports change; returns the unsubscribe. */
  subscribe(listener: () => void): () => void;
  /** Which study each viewport shows. */
  viewportStudies(): ViewportStudy[];
  /** Starts turning clicks on the viewports into patient points; returns the stop function. */
  capturePoints(onPoint: (point: ViewerPoint) => void, onError: (message: string) => void): () => void;
  /** Fetches the study's series metadata again so a new series (a refined SEG) gets a display set, then shows it. */
  showNewSeries(studyInstanceUid: string, seriesInstanceUid: string | null, viewportId: string | null): Promise<SeriesShown>;
  /** Registers the links with cornerstone3D's spatial registration; returns how many were registered. */
  registerViewportLinks(links: ViewportLink[]): number;
  /**
   * Shows a SEG (by SOP Instance UID) over its images in a viewport at once, with no prompt;
   * resolves when the viewport shows the SEG's image series with the segmentation (or why not).
   */
  showSegmentation(viewportId: string, segSopInstanceUid: string): Promise<SegmentationShown>;
  /**
   * Moves each viewport to the slice nearest its point (linked scrolling paused meanwhile, so
   * each viewport keeps its own point); with `setWindow`, sets each viewport's window from the
   * slice it then shows.
   */
  goTo(targets: SliceTarget[], options: { setWindow: boolean }): Promise<SliceShown[]>;
}

/** StudyInstanceUIDs from a URL query (`?StudyInstanceUIDs=a,b` and/or repeated), de-duplicated, in order. */
export function studyUidsFromSearch(search: string): string[] {
  const params = new URLSearchParams(search);
  const values = [...params.getAll('StudyInstanceUIDs'), ...params.getAll('studyInstanceUIDs')];
  const uids: string[] = [];
  for (const value of values) {
    for (const part of value.split(',')) {
      const uid = part.trim();
      if (uid && !uids.includes(uid)) {
        uids.push(uid);
      }
    }
  }
  return uids;
}

/** 4x4 row-major (numpy `reshape(-1)`) -> column-major (gl-matrix). */
export function rowMajorToColumnMajor(rowMajor: readonly number[]): number[] {
  if (rowMajor.length !== 16 || rowMajor.some((v) => !Number.isFinite(v))) {
    throw new Error(`a 4x4 matrix needs 16 finite numbers, got ${rowMajor.length}`);
  }
  const out = new Array<number>(16);
  for (let row = 0; row < 4; row += 1) {
    for (let col = 0; col < 4; col += 1) {
      out[col * 4 + row] = rowMajor[row * 4 + col] as number;
    }
  }
  return out;
}

/**
 * Links for linked scrolling between viewports that show a follow-up and its baseline, from
 * the registration OncoFlow computed (`comparison.follow_up_to_baseline_lps`). For the slice
 * synchronizer the target is the baseline viewport and the source the follow-up viewport
 * (cornerstone3D inverts the matrix for the other direction).
 */
export function planViewportLinks(viewports: readonly ViewportStudy[], timeline: PatientTimeline | null): ViewportLink[] {
  if (!timeline) {
    return [];
  }
  const links: ViewportLink[] = [];
  for (const followUp of viewports) {
    const point = timeline.time_points.find((t) => t.study_instance_uid === followUp.studyInstanceUid);
    const matrix = point?.comparison?.follow_up_to_baseline_lps;
    const baselineUid = point?.comparison?.baseline_study_instance_uid ?? point?.baseline_study_instance_uid;
    if (!point || !matrix || !baselineUid) {
      continue;
    }
    for (const baseline of viewports) {
      if (baseline.studyInstanceUid !== baselineUid || baseline.viewportId === followUp.viewportId) {
        continue;
      }
      links.push({
        targetViewportId: baseline.viewportId,
        sourceViewportId: followUp.viewportId,
        matrixColumnMajor: rowMajorToColumnMajor(matrix),
        description: `${point.study_date} → baseline (${point.comparison?.registration.method ?? 'registration'})`,
      });
    }
  }
  return links;
}
