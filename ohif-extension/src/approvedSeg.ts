/**
 * The radiologist's approved segmentation ("the radiologist's word wins", issue 18 item 5): which SEG
 * of a study is measured, which SEGs may be approved, the 422 segment choice and the texts shown. Pure:
 * `components/ApprovedSegControl.tsx` renders it, `api.ts` sends it.
 */

import {
  OncoFlowApiError,
  type ApprovalInForce,
  type ApproveSegRequest,
  type SegmentationApproval,
  type StudyJob,
  type StudySeg,
  type TimelineOutcome,
} from './api';
import { formatFixed, formatVolume } from './format';

/** What is measured without an approval. */
export const AUTOMATIC_TEXT = 'Automatic (panel ensemble)';
/** What a 403 of the route means (the request filter's own 403 has no JSON `error`). */
export const RADIOLOGIST_ONLY = 'only a radiologist may approve a segmentation or withdraw an approval';
/** OncoFlow's SEGs are described `OncoFlow SEG <algorithm>`; the refined ones (`oncoflow/dicom/seg_writer.py`) this. */
export const ONCOFLOW_SEG_PREFIX = 'OncoFlow SEG';
export const REFINED_DESCRIPTION_PREFIX = 'OncoFlow SEG refined';
/** OncoFlow's Manufacturer (0008,0070) (`oncoflow/dicom/derived_object.py`). */
export const ONCOFLOW_MANUFACTURER = 'OncoFlow';

/** A SEG the radiologist may approve as the study's tumour. */
export interface SegCandidate {
  sopInstanceUid: string;
  /** `refined`: a version of `POST …/refine`; `stored`: stored by another application (OHIF's segmentation tools). */
  kind: 'refined' | 'stored';
  label: string;
  version: number | null;
  volumeCm3: number | null;
}

/** The SOP Instance UIDs of the study's automatic SEGs, from its job (ensemble, experts, brain). */
export function automaticSegUids(job: StudyJob | null | undefined): Set<string> {
  const uids = new Set<string>();
  const outputs = job?.outputs;
  for (const uid of outputs?.seg_sop_instance_uids ?? []) {
    uids.add(uid);
  }
  if (outputs?.ensemble_seg_sop_instance_uid) {
    uids.add(outputs.ensemble_seg_sop_instance_uid);
  }
  for (const expert of Object.values(outputs?.experts ?? {})) {
    if (expert.seg_sop_instance_uid) {
      uids.add(expert.seg_sop_instance_uid);
    }
  }
  return uids;
}

function isRefinedDescription(description: string | null): boolean {
  return (description ?? '').startsWith(REFINED_DESCRIPTION_PREFIX);
}

/**
 * One of OncoFlow's automatic SEGs (what is measured without an approval; the route refuses them):
 * listed in the job, or described `OncoFlow SEG …` or made by OncoFlow, except the refined ones.
 */
export function isAutomaticSeg(seg: StudySeg, automatic: ReadonlySet<string>): boolean {
  if (automatic.has(seg.sopInstanceUid)) {
    return true;
  }
  if (isRefinedDescription(seg.seriesDescription)) {
    return false;
  }
  return (seg.seriesDescription ?? '').startsWith(ONCOFLOW_SEG_PREFIX) || seg.manufacturer === ONCOFLOW_MANUFACTURER;
}

function storedLabel(seg: StudySeg): string {
  const parts = [seg.seriesDescription?.trim() || 'SEG'];
  if (seg.seriesNumber !== null) {
    parts.push(`series ${seg.seriesNumber}`);
  }
  if (seg.manufacturer && !isRefinedDescription(seg.seriesDescription)) {
    parts.push(seg.manufacturer);
  }
  return parts.join(' · ');
}

/**
 * The SEGs that may be approved: the refined versions of the study (its job's `refinements`, newest
 * first), then every other SEG of the study (QIDO-RS) that is not one of OncoFlow's automatic SEGs.
 */
export function segCandidates(job: StudyJob | null | undefined, segs: readonly StudySeg[]): SegCandidate[] {
  const candidates: SegCandidate[] = [];
  const refinements = [...(job?.refinements ?? [])].sort((a, b) => b.version - a.version);
  for (const refinement of refinements) {
    if (candidates.some((c) => c.sopInstanceUid === refinement.sop_instance_uid)) {
      continue;
    }
    const volume = typeof refinement.volume_cm3 === 'number' ? refinement.volume_cm3 : null;
    candidates.push({
      sopInstanceUid: refinement.sop_instance_uid,
      kind: 'refined',
      label: `Refined SEG v${refinement.version}${volume !== null ? ` · ${formatVolume(volume)}` : ''}`,
      version: refinement.version,
      volumeCm3: volume,
    });
  }
  const automatic = automaticSegUids(job);
  for (const seg of segs) {
    if (candidates.some((c) => c.sopInstanceUid === seg.sopInstanceUid) || isAutomaticSeg(seg, automatic)) {
      continue;
    }
    candidates.push({
      sopInstanceUid: seg.sopInstanceUid,
      kind: isRefinedDescription(seg.seriesDescription) ? 'refined' : 'stored',
      label: storedLabel(seg),
      version: null,
      volumeCm3: null,
    });
  }
  return candidates;
}

/** `…` and the last 12 characters of a long UID. */
export function shortUid(uid: string): string {
  return uid.length > 16 ? `…${uid.slice(-12)}` : uid;
}

/** `YYYY-MM-DD HH:MM UTC` of epoch seconds, as the route writes it. */
export function approvalTime(epochSeconds: number): string {
  const date = new Date(epochSeconds * 1000);
  return Number.isNaN(date.getTime()) ? String(epochSeconds) : `${date.toISOString().slice(0, 16).replace('T', ' ')} UTC`;
}

/** Who approved it and when, as the route's `describe` says it (used when an answer has no `statement`). */
export function describeApproval(approval: SegmentationApproval): string {
  const who = approval.approved_role === 'anonymous' ? 'an anonymous user (login off)' : `${approval.approved_role} ${approval.approved_by}`;
  return `approved by ${who}, ${approvalTime(approval.approved_at)}`;
}

function segmentsText(numbers: readonly number[]): string {
  return `${numbers.length === 1 ? 'segment' : 'segments'} ${numbers.join(', ')}`;
}

/**
 * Which segmentation is measured: `Automatic (panel ensemble)`, or the approved SEG (which one, its
 * segments) with the route's statement (who approved it and when).
 */
export function measuredText(approval: SegmentationApproval | null | undefined, statement?: string | null): string {
  if (!approval) {
    return AUTOMATIC_TEXT;
  }
  const said = statement || approval.statement || describeApproval(approval);
  const source = approval.source || 'approved SEG';
  return `Approved segmentation: ${source} (SEG ${shortUid(approval.sop_instance_uid)}, ${segmentsText(approval.segment_numbers)}), ${said}`;
}

/** How far the automatic result is from the approved segmentation, or null when not compared. */
export function inForceText(inForce: ApprovalInForce | null | undefined): { text: string; differs: boolean } | null {
  if (!inForce) {
    return null;
  }
  if (inForce.error) {
    return { text: `The approved SEG could not be compared with the automatic result: ${inForce.error}`, differs: true };
  }
  if (typeof inForce.dice_vs_automatic !== 'number') {
    return null;
  }
  const differs = inForce.automatic_differs === true;
  const volumes =
    typeof inForce.automatic_volume_cm3 === 'number' && typeof inForce.volume_cm3 === 'number'
      ? `, automatic ${formatVolume(inForce.automatic_volume_cm3)} against the approved ${formatVolume(inForce.volume_cm3)}`
      : '';
  return {
    text: `The automatic result ${differs ? 'differs a lot' : 'agrees'}: Dice ${formatFixed(inForce.dice_vs_automatic, 2)}${volumes}${differs ? '; review the approval' : ''}.`,
    differs,
  };
}

/** What the recomputed timeline says after an approval or a withdrawal. */
export function timelineNote(outcome: TimelineOutcome | null | undefined): string {
  if (!outcome) {
    return '';
  }
  if (typeof outcome.error === 'string' && outcome.error) {
    return `The timeline was not recomputed: ${outcome.error}.`;
  }
  const label = outcome.response?.label;
  return label ? `Response now: ${label}.` : 'The timeline, SR and report were recomputed.';
}

/** A route error as the panel shows it: the route's `error` and the status; a 403 says only a radiologist may approve. */
export function approvalErrorText(error: unknown): string {
  if (error instanceof OncoFlowApiError) {
    if (error.status === 403 && !/radiologist/i.test(error.message)) {
      return `${RADIOLOGIST_ONLY} (HTTP 403: ${error.message})`;
    }
    return `${error.message} (HTTP ${error.status})`;
  }
  return error instanceof Error ? error.message : String(error);
}

/** One segment of a SEG, as the route's 422 lists it in `segments`. */
export interface SegmentOption {
  number: number;
  label: string;
  meaning: string;
}

/** The segments a 422 of `POST …/approved-seg` lists in its `segments` (the SEG's segments, to choose from). */
export function segmentOptions(body: unknown): SegmentOption[] {
  const listed = body && typeof body === 'object' && 'segments' in body ? (body as { segments: unknown }).segments : null;
  if (!Array.isArray(listed)) return [];
  const options: SegmentOption[] = [];
  for (const item of listed) {
    const { number, label, meaning } = (item ?? {}) as Record<string, unknown>;
    if (typeof number === 'number' && Number.isInteger(number) && number > 0 && !options.some((o) => o.number === number)) {
      options.push({ number, label: typeof label === 'string' ? label : '', meaning: typeof meaning === 'string' ? meaning : '' });
    }
  }
  return options;
}

export function segmentOptionText(option: SegmentOption): string {
  return `${option.number} '${option.label}'${option.meaning ? ` (${option.meaning})` : ''}`;
}

/** What to do after a refused approval: let the user choose the tumour's segments (422 with a list), or show the error. */
export type ApproveRefusal =
  | { kind: 'choose-segments'; sopInstanceUid: string; options: SegmentOption[]; chosen: number[]; message: string }
  | { kind: 'error'; text: string };

export function approveRefusal(error: unknown, request: ApproveSegRequest): ApproveRefusal {
  if (error instanceof OncoFlowApiError && error.status === 422) {
    const options = segmentOptions(error.body);
    if (options.length) {
      const chosen = (request.segment_numbers ?? []).filter((n) => options.some((o) => o.number === n));
      return { kind: 'choose-segments', sopInstanceUid: request.sop_instance_uid, options, chosen, message: error.message };
    }
  }
  return { kind: 'error', text: approvalErrorText(error) };
}

/** The request that approves `sopInstanceUid` with the chosen segments (none: the route finds them). */
export function approveRequest(sopInstanceUid: string, segmentNumbers: readonly number[] = []): ApproveSegRequest {
  const numbers = [...new Set(segmentNumbers)].filter((n) => Number.isInteger(n) && n > 0).sort((a, b) => a - b);
  return numbers.length ? { sop_instance_uid: sopInstanceUid, segment_numbers: numbers } : { sop_instance_uid: sopInstanceUid };
}

/** `chosen` with `number` added or taken away, in order. */
export function toggleSegment(chosen: readonly number[], number: number): number[] {
  return chosen.includes(number) ? chosen.filter((n) => n !== number) : [...chosen, number].sort((a, b) => a - b);
}
