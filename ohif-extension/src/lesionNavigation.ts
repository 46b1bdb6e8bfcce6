/**
 * Where the viewports open and go: the lesion to show (the largest target lesion, or the one
 * clicked in the lesion table), its centroid in each viewport's own study, the slice nearest it,
 * and a display window computed from the slice shown. Pure: the OHIF bridge applies the results.
 */

import type { LesionRecord, PatientTimeline, TimePoint } from './api';
import type { Vec3, ViewportStudy } from './viewerBridge';

// -- which lesion ----------------------------------------------------------------------------

/**
 * The lesion a viewer opens on: the largest target lesion by volume; without target lesions,
 * the largest lesion; null without lesions. Ties go to the first row (the route's order).
 */
export function largestTargetLesion(lesions: readonly LesionRecord[] | null | undefined): LesionRecord | null {
  const rows = (lesions ?? []).filter((l) => Number.isFinite(l.volume_cm3) && isVec3(l.centroid_lps_mm));
  const targets = rows.filter((l) => l.target);
  const pool = targets.length ? targets : rows;
  let best: LesionRecord | null = null;
  for (const row of pool) {
    if (!best || row.volume_cm3 > best.volume_cm3) {
      best = row;
    }
  }
  return best;
}

function isVec3(value: unknown): value is Vec3 {
  return Array.isArray(value) && value.length === 3 && value.every((v) => typeof v === 'number' && Number.isFinite(v));
}

/**
 * The row of `trackingId` in one visit: the lesion itself, else the lesion it merged into
 * (`merged_ids`), else the largest part that split off it (`split_from`); null when the visit
 * has none of them.
 */
export function matchingLesion(lesions: readonly LesionRecord[] | null | undefined, trackingId: string): LesionRecord | null {
  const rows = (lesions ?? []).filter((l) => isVec3(l.centroid_lps_mm));
  const own = rows.find((l) => l.tracking_id === trackingId);
  if (own) {
    return own;
  }
  const merged = rows.find((l) => (l.merged_ids ?? []).includes(trackingId));
  if (merged) {
    return merged;
  }
  const parts = rows.filter((l) => l.split_from === trackingId);
  return parts.length ? parts.reduce((a, b) => (b.volume_cm3 > a.volume_cm3 ? b : a)) : null;
}

// -- where each viewport goes ----------------------------------------------------------------

export interface ViewportTarget {
  viewportId: string;
  studyInstanceUid: string;
  /** The point to show, LPS mm of this viewport's study. */
  positionMm: Vec3;
  /** `own`: the lesion's row in this viewport's study; `other`: that study lacks it, the centroid of the primary study's row. */
  source: 'own' | 'other';
}

export interface LesionJump {
  trackingId: string;
  /** The study whose lesion row chose the lesion (the current visit). */
  primaryStudyUid: string;
  targets: ViewportTarget[];
}

function timePointOf(timeline: PatientTimeline, studyUid: string): TimePoint | undefined {
  return timeline.time_points.find((t) => t.study_instance_uid === studyUid);
}

/**
 * Where each viewport goes to show a lesion: `trackingId`, or (null) the primary study's
 * largest target lesion. Each viewport goes to the lesion's centroid in its own study (the same
 * tracking ID, or what it merged into / split into); a study without the lesion takes the
 * primary study's centroid. When the primary study lacks the lesion (a lesion gone since), the
 * first shown study that has it gives the fallback. Null when no shown study has the lesion.
 */
export function planLesionJump(
  timeline: PatientTimeline | null,
  viewports: readonly ViewportStudy[],
  primaryStudyUid: string | null,
  trackingId: string | null = null,
): LesionJump | null {
  if (!timeline || !primaryStudyUid) {
    return null;
  }
  const primaryLesions = timePointOf(timeline, primaryStudyUid)?.lesions;
  const chosen = trackingId ?? largestTargetLesion(primaryLesions)?.tracking_id ?? null;
  if (!chosen) {
    return null;
  }
  const rowIn = (studyUid: string): LesionRecord | null => matchingLesion(timePointOf(timeline, studyUid)?.lesions, chosen);
  let fallback = rowIn(primaryStudyUid);
  if (!fallback) {
    for (const v of viewports) {
      fallback = rowIn(v.studyInstanceUid);
      if (fallback) {
        break;
      }
    }
  }
  if (!fallback) {
    return null;
  }
  const targets = viewports.map((v): ViewportTarget => {
    const own = rowIn(v.studyInstanceUid);
    const row = own ?? (fallback as LesionRecord);
    return {
      viewportId: v.viewportId,
      studyInstanceUid: v.studyInstanceUid,
      positionMm: [...row.centroid_lps_mm] as Vec3,
      source: own ? 'own' : 'other',
    };
  });
  return { trackingId: chosen, primaryStudyUid, targets };
}

// -- which slice -----------------------------------------------------------------------------

/** An image's plane (cornerstone's `imagePlaneModule`). */
export interface ImagePlane {
  imagePositionPatient: readonly number[];
  rowCosines: readonly number[];
  columnCosines: readonly number[];
}

export interface NearestSlice {
  index: number;
  /** Distance of the point from that slice's plane, mm. */
  distanceMm: number;
}

function cross(a: readonly number[], b: readonly number[]): Vec3 {
  const [a0 = 0, a1 = 0, a2 = 0] = a;
  const [b0 = 0, b1 = 0, b2 = 0] = b;
  return [a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0];
}

/**
 * The slice whose plane is nearest `point` (distance along each slice's own normal, the cross
 * product of its row and column cosines); null when no plane is usable.
 */
export function nearestSlice(planes: ReadonlyArray<ImagePlane | null | undefined>, point: Vec3): NearestSlice | null {
  let best: NearestSlice | null = null;
  for (let index = 0; index < planes.length; index += 1) {
    const plane = planes[index];
    if (!plane || !isVec3(plane.imagePositionPatient)) {
      continue;
    }
    const normal = cross(plane.rowCosines, plane.columnCosines);
    const length = Math.hypot(...normal);
    if (!Number.isFinite(length) || length < 1e-6) {
      continue;
    }
    const [x, y, z] = plane.imagePositionPatient as Vec3;
    const distanceMm = Math.abs(((point[0] - x) * normal[0] + (point[1] - y) * normal[1] + (point[2] - z) * normal[2]) / length);
    if (!best || distanceMm < best.distanceMm) {
      best = { index, distanceMm };
    }
  }
  return best;
}

// -- which window ----------------------------------------------------------------------------

export interface VoiRange {
  lower: number;
  upper: number;
}

export interface VoiChoice extends VoiRange {
  /** `dicom`: the image's WindowCenter/Width; `percentiles`: its pixels' 1st–99th percentiles; `range`: min–max. */
  source: 'dicom' | 'percentiles' | 'range';
}

/** The `p`-quantile (0..1) of sorted values, linear between neighbours. */
function quantile(sorted: Float64Array, p: number): number {
  const position = (sorted.length - 1) * p;
  const below = Math.floor(position);
  const above = Math.min(sorted.length - 1, below + 1);
  const low = sorted[below] as number;
  const high = sorted[above] as number;
  return low + (high - low) * (position - below);
}

/** At most this many pixels are sorted (an even sample of larger images). */
const MAX_SAMPLES = 1 << 18;

/** The 1st and 99th percentiles (and min, max) of the finite values of `pixels`; null when none is finite. */
export function pixelPercentiles(pixels: ArrayLike<number>): { p1: number; p99: number; min: number; max: number } | null {
  const step = Math.max(1, Math.ceil(pixels.length / MAX_SAMPLES));
  const sample = new Float64Array(Math.ceil(pixels.length / step));
  let n = 0;
  for (let i = 0; i < pixels.length; i += step) {
    const v = pixels[i] as number;
    if (Number.isFinite(v)) {
      sample[n] = v;
      n += 1;
    }
  }
  if (!n) {
    return null;
  }
  const sorted = sample.subarray(0, n).sort();
  return { p1: quantile(sorted, 0.01), p99: quantile(sorted, 0.99), min: sorted[0] as number, max: sorted[n - 1] as number };
}

function firstNumber(value: number | readonly number[] | null | undefined): number | null {
  const v = Array.isArray(value) ? value[0] : value;
  return typeof v === 'number' && Number.isFinite(v) ? v : null;
}

export interface VoiInput {
  /** WindowCenter / WindowWidth of the image (DICOM; the first of several), when present. */
  windowCenter?: number | readonly number[] | null;
  windowWidth?: number | readonly number[] | null;
  /** Modality (rescaled) pixel values of the slice shown. */
  pixels: ArrayLike<number> | null;
}

/**
 * A display window for the slice shown: the image's own WindowCenter/Width when present and
 * sane (width above 1, centre within the slice's 1st–99th percentile range), else the 1st–99th
 * percentiles of its pixels, else their min–max (widened to 1 when the slice is flat); null when
 * there is nothing to go on.
 */
export function chooseVoi({ windowCenter, windowWidth, pixels }: VoiInput): VoiChoice | null {
  const stats = pixels && pixels.length ? pixelPercentiles(pixels) : null;
  const center = firstNumber(windowCenter);
  const width = firstNumber(windowWidth);
  if (center !== null && width !== null && width > 1) {
    const inRange = !stats || (center >= stats.p1 && center <= stats.p99 && stats.p99 > stats.p1);
    if (inRange) {
      return { lower: center - width / 2, upper: center + width / 2, source: 'dicom' };
    }
  }
  if (!stats) {
    return null;
  }
  if (stats.p99 > stats.p1) {
    return { lower: stats.p1, upper: stats.p99, source: 'percentiles' };
  }
  if (stats.max > stats.min) {
    return { lower: stats.min, upper: stats.max, source: 'range' };
  }
  return { lower: stats.min - 0.5, upper: stats.max + 0.5, source: 'range' };
}

/**
 * The slice's modality values: the loader's pixel data as is when it is already scaled (or
 * slope 1, intercept 0), else `slope * value + intercept`.
 */
export function modalityPixels(pixels: ArrayLike<number>, scaling: { scaled?: boolean; slope?: number; intercept?: number }): ArrayLike<number> {
  const slope = typeof scaling.slope === 'number' && Number.isFinite(scaling.slope) ? scaling.slope : 1;
  const intercept = typeof scaling.intercept === 'number' && Number.isFinite(scaling.intercept) ? scaling.intercept : 0;
  if (scaling.scaled || (slope === 1 && intercept === 0)) {
    return pixels;
  }
  const out = new Float64Array(pixels.length);
  for (let i = 0; i < pixels.length; i += 1) {
    out[i] = (pixels[i] as number) * slope + intercept;
  }
  return out;
}
