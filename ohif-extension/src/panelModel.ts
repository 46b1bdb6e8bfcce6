/**
 * The panel's view model: OncoFlow's JSON (study job + patient timeline) -> rows, labels and
 * chart geometry. Pure and synchronous; numbers are only formatted, never recomputed, and
 * each displayed number keeps the route's raw value for the `data-value` attribute.
 */

import type {
  Comparison,
  ExpertSummary,
  JobState,
  LesionRecord,
  PatientTimeline,
  ResponseAssessment,
  StudyJob,
  TimePoint,
} from './api';
import {
  formatClock,
  formatFixed,
  formatInUnit,
  formatDays,
  formatGrowthRate,
  formatInterval,
  formatMillimetres,
  formatPercent,
  formatRatio,
  formatSeconds,
  formatSignedVolume,
  formatVolume,
  rawValue,
  unitText,
} from './format';
import { buildTimelineChart, type ChartLayout, type TimelineChartModel, DEFAULT_CHART_LAYOUT } from './timelineChartModel';

// -- inputs ----------------------------------------------------------------------------------

/** Where a fetched resource stands. */
export type Loadable<T> =
  | { status: 'idle' }
  | { status: 'loading' }
  | { status: 'missing'; message: string }
  | { status: 'error'; message: string }
  | { status: 'loaded'; value: T };

export interface PanelModelInput {
  /** The study the panel reports on (one of the viewer's studies). */
  focusStudyUid: string | null;
  /** The viewer's studies in URL order (`StudyInstanceUIDs=<follow-up>,<baseline>`). */
  viewerStudyUids: readonly string[];
  job: Loadable<StudyJob>;
  timeline: Loadable<PatientTimeline>;
  /** Time zone of event clocks; the browser's when omitted. */
  timeZone?: string;
  chartLayout?: ChartLayout;
}

// -- outputs ---------------------------------------------------------------------------------

/** A displayed number: its text and the route's raw value. */
export interface Measured {
  text: string;
  raw: string;
}

export type JobViewState = JobState | 'none' | 'loading' | 'error' | 'idle';

export interface JobEventRow {
  clock: string;
  message: string;
}

export interface TimingRow {
  stage: string;
  text: string;
}

export interface JobView {
  state: JobViewState;
  label: string;
  /** Queued or running: the panel keeps polling. */
  isActive: boolean;
  error: string | null;
  trigger: string | null;
  /** Latest first. */
  events: JobEventRow[];
  timings: TimingRow[];
  tumourVolume: Measured | null;
}

export interface VolumesView {
  baseline: Measured | null;
  followUp: Measured | null;
  percentChange: Measured | null;
  percentChangeCi: string | null;
  /** True when the focus study is itself the baseline (no comparison). */
  baselineOnly: boolean;
}

export interface ComparisonDetailRow {
  label: string;
  value: Measured;
}

export interface ComparisonView {
  baselineStudyUid: string | null;
  baselineDate: string | null;
  followUpDate: string | null;
  details: ComparisonDetailRow[];
}

export type FlagTone = 'alert' | 'review' | 'good' | 'neutral';

export interface FlagView {
  /** The route's flag, '' when there is none (baseline, not compared). */
  raw: string;
  label: string;
  reason: string;
  tone: FlagTone;
}

export interface AgreementView {
  strategy: string;
  score: Measured;
  flag: string;
}

export interface ExpertRow {
  name: string;
  status: string;
  /** `ran`, or the reason it was skipped / failed. */
  statusText: string;
  ran: boolean;
  volume: Measured;
  diceVsEnsemble: Measured;
  iouVsEnsemble: Measured;
  runtime: string;
  version: string;
}

export interface ReportView {
  sopInstanceUid: string | null;
  error: string | null;
}

export interface TimePointRow {
  studyInstanceUid: string;
  studyDate: string;
  volume: Measured;
  flag: string;
  error: string | null;
  isFocus: boolean;
  inViewer: boolean;
}

export interface RefinementRow {
  version: number;
  sopInstanceUid: string;
  volume: Measured;
}

export interface RegionRow {
  region: string;
  name: string;
  volume: Measured;
  agreement: Measured;
  flag: string;
  experts: string;
  /** The region the volumes and the change are measured on. */
  measured: boolean;
}

/** What a lesion's change against an earlier visit reads as. */
export type LesionChangeKind = 'change' | 'new' | 'split' | 'gone' | 'none';

export interface LesionChange {
  kind: LesionChangeKind;
  /** `+12.0 %`, `new`, `split from Lesion 1`, `gone` or `—`. */
  text: string;
  /** The percent change (computed here from the route's values, 2 decimals) for `change`; '' otherwise. */
  raw: string;
}

export interface LesionRow {
  trackingId: string;
  /** False for a lesion of an earlier visit that this visit no longer has (`gone`). */
  present: boolean;
  /** The route's tracking status, or `gone`. */
  status: string;
  /** `continued`, `new`, `merged with Lesion 3`, `split from Lesion 1`, `gone`. */
  statusText: string;
  /** Target lesion of the response; null for a gone lesion. */
  target: boolean | null;
  /** `target`, `non-target` or `—`. */
  roleText: string;
  measurable: boolean | null;
  /** `measurable`, `not measurable: <reasons>` or `—`. */
  measurableText: string;
  /** cm³, 2 decimals, the unit in the table's header (the panel is narrow). */
  volume: Measured;
  /** mm², 1 decimal (longest × perpendicular diameter). */
  product: Measured;
  /** Change against the first visit (RANO's baseline). */
  vsBaseline: LesionChange;
  /** Change against the visit before this one. */
  vsPrevious: LesionChange;
}

export type LesionMeasure = 'volume' | 'product' | 'diameter';

export interface LesionTableView {
  /** The measure the changes are in: the response criteria's (volume without a response). */
  measure: LesionMeasure;
  baselineDate: string | null;
  previousDate: string | null;
  /** Lesions of this visit (by identifier), then the lesions gone since. */
  rows: LesionRow[];
  /** Why there are no rows (no lesion, or a time point analysed before lesion tracking). */
  note: string | null;
}

export interface ResponseView {
  category: string;
  /** `Partial response`, …. */
  categoryName: string;
  confirmation: string;
  /** The route's label, e.g. `PR (preliminary)`. */
  label: string;
  criteria: string;
  tone: FlagTone;
  targets: string;
  unit: string;
  targetSum: Measured;
  baselineSum: Measured;
  nadirSum: Measured;
  changeFromBaseline: Measured;
  changeFromNadir: Measured;
  reasons: string[];
}

export interface PanelView {
  job: JobView;
  volumes: VolumesView | null;
  comparison: ComparisonView | null;
  flag: FlagView | null;
  agreement: AgreementView | null;
  regions: RegionRow[];
  /** The guard's verdict when the segmentation needs review; null when plausible or not known. */
  review: string | null;
  experts: ExpertRow[];
  report: ReportView;
  timelineNote: string | null;
  chart: TimelineChartModel | null;
  timePoints: TimePointRow[];
  refinements: RefinementRow[];
  /** The focus visit's lesions; null when nothing is known of the focus study yet. */
  lesions: LesionTableView | null;
  response: ResponseView | null;
  /** Why there is no response (the first visit, or a time point analysed before). */
  responseNote: string | null;
}

// -- builders --------------------------------------------------------------------------------

const STATE_LABELS: Record<JobViewState, string> = {
  idle: 'Waiting for the viewer',
  loading: 'Loading…',
  none: 'No OncoFlow job for this study',
  error: 'OncoFlow unreachable',
  queued: 'Queued',
  running: 'Running',
  done: 'Done',
  failed: 'Failed',
};

const MAX_EVENTS = 12;

const MISSING_TEXT = '—';

export function isActiveJobState(state: string): boolean {
  return state === 'queued' || state === 'running';
}

function measured(text: string, raw: number | string | null | undefined): Measured {
  return { text, raw: rawValue(raw) };
}

export function buildJobView(job: Loadable<StudyJob>, timeZone?: string): JobView {
  if (job.status !== 'loaded') {
    const state: JobViewState = job.status === 'missing' ? 'none' : job.status;
    return {
      state,
      label: STATE_LABELS[state],
      isActive: false,
      error: job.status === 'error' ? job.message : null,
      trigger: null,
      events: [],
      timings: [],
      tumourVolume: null,
    };
  }
  const value = job.value;
  const events = [...value.events]
    .sort((a, b) => b.at - a.at)
    .slice(0, MAX_EVENTS)
    .map((e) => ({ clock: formatClock(e.at, timeZone), message: e.message }));
  const timings = Object.entries(value.timings_s).map(([stage, seconds]) => ({ stage, text: formatSeconds(seconds) }));
  const volume = value.outputs.tumour_volume_cm3;
  return {
    state: value.state,
    label: STATE_LABELS[value.state] ?? value.state,
    isActive: isActiveJobState(value.state),
    error: value.error,
    trigger: value.trigger ?? null,
    events,
    timings,
    tumourVolume: volume === undefined ? null : measured(formatVolume(volume), volume),
  };
}

export function flagTone(flag: string): FlagTone {
  switch (flag) {
    case 'progression':
      return 'alert';
    case 'poor registration':
    case 'high uncertainty':
      return 'review';
    case 'response':
    case 'stable':
      return 'good';
    default:
      return 'neutral';
  }
}

function buildFlag(timePoint: TimePoint | null, comparison: Comparison | null): FlagView | null {
  if (comparison) {
    return { raw: comparison.flag, label: comparison.flag, reason: comparison.flag_reason, tone: flagTone(comparison.flag) };
  }
  if (timePoint?.error) {
    return { raw: '', label: 'not compared', reason: timePoint.error, tone: 'review' };
  }
  if (timePoint) {
    return {
      raw: '',
      label: 'baseline',
      reason: 'no earlier time point of this patient to compare with',
      tone: 'neutral',
    };
  }
  return null;
}

function buildVolumes(timePoint: TimePoint | null, comparison: Comparison | null): VolumesView | null {
  if (comparison) {
    return {
      baseline: measured(formatVolume(comparison.volume_baseline_cm3), comparison.volume_baseline_cm3),
      followUp: measured(formatVolume(comparison.volume_follow_up_cm3), comparison.volume_follow_up_cm3),
      percentChange: measured(formatPercent(comparison.percent_change), comparison.percent_change),
      percentChangeCi: formatInterval(comparison.percent_change_ci95, formatPercent),
      baselineOnly: false,
    };
  }
  const volume = timePoint?.measurements?.volume_cm3;
  if (timePoint && !timePoint.baseline_study_instance_uid && volume !== undefined) {
    return {
      baseline: measured(formatVolume(volume), volume),
      followUp: null,
      percentChange: null,
      percentChangeCi: null,
      baselineOnly: true,
    };
  }
  return null;
}

function buildComparison(comparison: Comparison | null, timeline: PatientTimeline | null, focus: TimePoint | null): ComparisonView | null {
  if (!comparison) {
    return null;
  }
  const baselineUid = comparison.baseline_study_instance_uid ?? focus?.baseline_study_instance_uid ?? null;
  const baselineDate = timeline?.time_points.find((t) => t.study_instance_uid === baselineUid)?.study_date ?? null;
  const registration = comparison.registration;
  const details: ComparisonDetailRow[] = [
    { label: 'Volume difference', value: measured(formatSignedVolume(comparison.delta_cm3), comparison.delta_cm3) },
    { label: 'Days between', value: measured(formatDays(comparison.days_between), comparison.days_between) },
    {
      label: 'Growth rate',
      value: measured(formatGrowthRate(comparison.growth_rate_cm3_per_day), comparison.growth_rate_cm3_per_day),
    },
    { label: 'Dice (registered)', value: measured(formatRatio(comparison.dice), comparison.dice) },
    { label: 'HD95', value: measured(formatMillimetres(comparison.hd95_mm), comparison.hd95_mm) },
  ];
  if (registration) {
    details.push({
      label: `Registration (${registration.method}) NCC`,
      value: measured(
        `${formatRatio(registration.ncc_before)} → ${formatRatio(registration.ncc_after)}${registration.resegmented ? ' (re-segmented)' : ''}`,
        registration.ncc_after,
      ),
    });
  }
  return { baselineStudyUid: baselineUid, baselineDate, followUpDate: focus?.study_date ?? null, details };
}

export function buildExpertRows(job: StudyJob | null): ExpertRow[] {
  if (!job) {
    return [];
  }
  const experts: Record<string, ExpertSummary> = { ...(job.outputs.experts ?? {}) };
  const skipped = job.outputs.panel?.skipped ?? {};
  for (const [name, reason] of Object.entries(skipped)) {
    experts[name] ??= { status: 'skipped', reason, version: null, runtime_s: null };
  }
  const ranOrder = job.outputs.panel?.ran ?? [];
  const names = Object.keys(experts).sort((a, b) => {
    const rank = (name: string): number => {
      const index = ranOrder.indexOf(name);
      return index >= 0 ? index : ranOrder.length + (experts[name]?.status === 'ran' ? 0 : 1000);
    };
    return rank(a) - rank(b) || a.localeCompare(b);
  });
  return names.map((name) => {
    const expert = experts[name] as ExpertSummary;
    const ran = expert.status === 'ran';
    const reason = expert.reason ?? skipped[name] ?? null;
    return {
      name,
      status: expert.status,
      statusText: ran ? 'ran' : `${expert.status}${reason ? `: ${reason}` : ''}`,
      ran,
      volume: measured(formatVolume(expert.volume_cm3), expert.volume_cm3),
      diceVsEnsemble: measured(formatRatio(expert.dice_vs_fused), expert.dice_vs_fused),
      iouVsEnsemble: measured(formatRatio(expert.iou_vs_fused), expert.iou_vs_fused),
      runtime: formatSeconds(expert.runtime_s),
      version: expert.version ?? '',
    };
  });
}

function buildAgreement(job: StudyJob | null): AgreementView | null {
  const fusion = job?.outputs.fusion;
  if (!fusion) {
    return null;
  }
  return {
    strategy: fusion.strategy,
    score: measured(formatRatio(fusion.agreement_score), fusion.agreement_score),
    flag: fusion.flag,
  };
}

const REGION_ORDER = ['ET', 'TC', 'WT'];

function buildRegionRows(job: StudyJob | null): RegionRow[] {
  const regions = job?.outputs.regions ?? {};
  const driving = job?.outputs.driving_region ?? null;
  return Object.keys(regions)
    .sort((a, b) => REGION_ORDER.indexOf(a) - REGION_ORDER.indexOf(b))
    .map((region) => {
      const r = regions[region] as NonNullable<typeof regions[string]>;
      return {
        region,
        name: r.name,
        volume: measured(formatVolume(r.volume_cm3), r.volume_cm3),
        agreement: measured(formatRatio(r.agreement_score), r.agreement_score),
        flag: r.flag,
        experts: r.experts.join(', '),
        measured: region === driving,
      };
    });
}

function buildReport(timePoint: TimePoint | null, job: StudyJob | null): ReportView {
  const fromJob = job?.outputs.longitudinal?.report ?? null;
  const sopInstanceUid = timePoint?.report_sop_instance_uid ?? fromJob?.report_sop_instance_uid ?? null;
  const error = sopInstanceUid ? null : (timePoint?.report_error ?? fromJob?.error ?? null);
  return { sopInstanceUid, error };
}

function buildTimePointRows(timeline: PatientTimeline, focusUid: string | null, viewerUids: readonly string[]): TimePointRow[] {
  return timeline.time_points.map((t) => ({
    studyInstanceUid: t.study_instance_uid,
    studyDate: t.study_date,
    volume: measured(formatVolume(t.measurements?.volume_cm3), t.measurements?.volume_cm3),
    flag: t.comparison?.flag ?? (t.error ? 'not compared' : t.baseline_study_instance_uid ? '' : 'baseline'),
    error: t.error,
    isFocus: t.study_instance_uid === focusUid,
    inViewer: viewerUids.includes(t.study_instance_uid),
  }));
}

// -- lesions and response (issue 18) --------------------------------------------------------

const MEASURE_OF_UNIT: Record<string, LesionMeasure> = { cm3: 'volume', mm2: 'product', mm: 'diameter' };

function measureValue(lesion: LesionRecord, measure: LesionMeasure): number {
  return measure === 'volume' ? lesion.volume_cm3 : measure === 'product' ? lesion.product_mm2 : lesion.longest_diameter_mm;
}

/** `Lesion 12` -> 12, for ordering; identifiers without a number go last. */
function lesionNumber(trackingId: string): number {
  const match = /(\d+)\s*$/.exec(trackingId);
  return match ? Number(match[1]) : Number.POSITIVE_INFINITY;
}

function byLesionNumber(a: string, b: string): number {
  return lesionNumber(a) - lesionNumber(b) || a.localeCompare(b);
}

function percentChange(now: number, before: number): number | null {
  if (!Number.isFinite(now) || !Number.isFinite(before) || before <= 0) {
    return null;
  }
  return Math.round(((now - before) / before) * 100 * 100) / 100;
}

const NO_CHANGE: LesionChange = { kind: 'none', text: MISSING_TEXT, raw: '' };

/** The time points in date order (the route's order already; kept stable). */
function inDateOrder(points: readonly TimePoint[]): TimePoint[] {
  return [...points].sort((a, b) => (a.study_date < b.study_date ? -1 : a.study_date > b.study_date ? 1 : 0));
}

interface LesionContext {
  measure: LesionMeasure;
  /** The first visit (RANO's baseline), unless it is the focus. */
  baseline: TimePoint | null;
  /** The visit before the focus (without an error), unless there is none. */
  previous: TimePoint | null;
  /** The visits up to the focus, in date order, for where a lesion first appeared. */
  history: TimePoint[];
  /** Identifier -> the identifiers merged into it at some visit up to the focus. */
  mergedInto: Map<string, string[]>;
}

/** The identifier and every identifier merged into it, directly or through earlier merges. */
function withMerged(trackingId: string, mergedInto: ReadonlyMap<string, string[]>): Set<string> {
  const ids = new Set<string>([trackingId]);
  const queue = [trackingId];
  while (queue.length) {
    for (const merged of mergedInto.get(queue.pop() as string) ?? []) {
      if (!ids.has(merged)) {
        ids.add(merged);
        queue.push(merged);
      }
    }
  }
  return ids;
}

function mergeHistory(history: readonly TimePoint[], current: readonly LesionRecord[]): Map<string, string[]> {
  const mergedInto = new Map<string, string[]>();
  for (const lesion of [...history.flatMap((t) => t.lesions ?? []), ...current]) {
    if (lesion.merged_ids?.length) {
      mergedInto.set(lesion.tracking_id, [...(mergedInto.get(lesion.tracking_id) ?? []), ...lesion.merged_ids]);
    }
  }
  return mergedInto;
}

function firstAppearance(trackingId: string, history: readonly TimePoint[]): LesionRecord | null {
  for (const point of history) {
    const found = point.lesions?.find((l) => l.tracking_id === trackingId);
    if (found) {
      return found;
    }
  }
  return null;
}

/** A present lesion against an earlier visit: its merged predecessors summed, `new` / `split` when absent there. */
function changeAgainst(lesion: LesionRecord, reference: TimePoint | null, context: LesionContext): LesionChange {
  if (!reference || !Array.isArray(reference.lesions)) {
    return NO_CHANGE;
  }
  const ids = withMerged(lesion.tracking_id, context.mergedInto);
  const before = reference.lesions.filter((l) => ids.has(l.tracking_id));
  if (!before.length) {
    const origin = firstAppearance(lesion.tracking_id, context.history) ?? lesion;
    const splitFrom = origin.status === 'split' ? origin.split_from : null;
    return splitFrom ? { kind: 'split', text: `split from ${splitFrom}`, raw: '' } : { kind: 'new', text: 'new', raw: '' };
  }
  const beforeValue = before.reduce((sum, l) => sum + measureValue(l, context.measure), 0);
  const change = percentChange(measureValue(lesion, context.measure), beforeValue);
  return { kind: 'change', text: formatPercent(change), raw: rawValue(change) };
}

function goneAgainst(trackingId: string, reference: TimePoint | null): LesionChange {
  return reference?.lesions?.some((l) => l.tracking_id === trackingId) ? { kind: 'gone', text: 'gone', raw: '' } : NO_CHANGE;
}

function statusText(lesion: LesionRecord): string {
  if (lesion.status === 'merged' && lesion.merged_ids?.length) {
    return `merged with ${lesion.merged_ids.join(', ')}`;
  }
  if (lesion.status === 'split' && lesion.split_from) {
    return `split from ${lesion.split_from}`;
  }
  return lesion.status;
}

function presentRow(lesion: LesionRecord, context: LesionContext): LesionRow {
  const reasons = lesion.not_measurable ?? [];
  return {
    trackingId: lesion.tracking_id,
    present: true,
    status: lesion.status,
    statusText: statusText(lesion),
    target: lesion.target,
    roleText: lesion.target ? 'target' : 'non-target',
    measurable: lesion.measurable,
    measurableText: lesion.measurable ? 'measurable' : `not measurable${reasons.length ? `: ${reasons.join('; ')}` : ''}`,
    volume: measured(formatFixed(lesion.volume_cm3, 2), lesion.volume_cm3),
    product: measured(formatFixed(lesion.product_mm2, 1), lesion.product_mm2),
    vsBaseline: changeAgainst(lesion, context.baseline, context),
    vsPrevious: changeAgainst(lesion, context.previous, context),
  };
}

function goneRow(trackingId: string, context: LesionContext): LesionRow {
  return {
    trackingId,
    present: false,
    status: 'gone',
    statusText: 'gone',
    target: null,
    roleText: MISSING_TEXT,
    measurable: null,
    measurableText: MISSING_TEXT,
    volume: measured(MISSING_TEXT, null),
    product: measured(MISSING_TEXT, null),
    vsBaseline: goneAgainst(trackingId, context.baseline),
    vsPrevious: goneAgainst(trackingId, context.previous),
  };
}

/** The response that sets the measure and the chart's sum: the focus visit's, else the latest in the timeline. */
function referenceResponse(focusResponse: ResponseAssessment | null, timeline: PatientTimeline | null): ResponseAssessment | null {
  if (focusResponse) {
    return focusResponse;
  }
  const points = timeline ? inDateOrder(timeline.time_points) : [];
  for (let i = points.length - 1; i >= 0; i -= 1) {
    const response = points[i]?.response;
    if (response) {
      return response;
    }
  }
  return null;
}

/**
 * The focus visit's lesion table: its lesions by tracking identifier, their change against the first visit and
 * the visit before (computed here from the timeline's rows), then the lesions of earlier visits it no longer has.
 */
export function buildLesionTable(
  focusUid: string | null,
  lesions: readonly LesionRecord[] | null | undefined,
  timeline: PatientTimeline | null,
  responseUnit: string | null,
): LesionTableView {
  const measure = MEASURE_OF_UNIT[responseUnit ?? 'cm3'] ?? 'volume';
  const ordered = timeline ? inDateOrder(timeline.time_points) : [];
  const focusIndex = ordered.findIndex((t) => t.study_instance_uid === focusUid);
  const earlier = focusIndex >= 0 ? ordered.slice(0, focusIndex) : [];
  const first = ordered[0] ?? null;
  const baseline = focusIndex > 0 && first && !first.error ? first : null;
  const previous = [...earlier].reverse().find((t) => !t.error) ?? null;
  const history = focusIndex >= 0 ? ordered.slice(0, focusIndex + 1) : [];
  const context: LesionContext = {
    measure,
    baseline,
    previous,
    history,
    mergedInto: mergeHistory(history, Array.isArray(lesions) ? lesions : []),
  };
  const view = (rows: LesionRow[], note: string | null): LesionTableView => ({
    measure,
    baselineDate: baseline?.study_date ?? null,
    previousDate: previous?.study_date ?? null,
    rows,
    note,
  });
  if (!Array.isArray(lesions)) {
    return view([], 'No lesion-by-lesion results for this study: it was analysed before lesion tracking (re-analyse to add them).');
  }
  const present = [...lesions].sort((a, b) => byLesionNumber(a.tracking_id, b.tracking_id)).map((l) => presentRow(l, context));
  const carried = new Set(lesions.flatMap((l) => [...withMerged(l.tracking_id, context.mergedInto)]));
  const goneIds = new Set<string>();
  for (const point of earlier) {
    for (const l of point.lesions ?? []) {
      if (!carried.has(l.tracking_id)) {
        goneIds.add(l.tracking_id);
      }
    }
  }
  const gone = [...goneIds].sort(byLesionNumber).map((id) => goneRow(id, context));
  const rows = [...present, ...gone];
  return view(rows, rows.length ? null : 'No lesion found in this study.');
}

const CATEGORY_NAMES: Record<string, string> = {
  CR: 'Complete response',
  PR: 'Partial response',
  MR: 'Minor response',
  SD: 'Stable disease',
  PD: 'Progressive disease',
};

export function responseTone(category: string): FlagTone {
  switch (category) {
    case 'PD':
      return 'alert';
    case 'CR':
    case 'PR':
    case 'MR':
    case 'SD':
      return 'good';
    default:
      return 'neutral';
  }
}

export function buildResponse(response: ResponseAssessment): ResponseView {
  const unit = response.unit;
  return {
    category: response.category,
    categoryName: CATEGORY_NAMES[response.category] ?? response.category,
    confirmation: response.confirmation,
    label: response.label,
    criteria: response.criteria,
    tone: responseTone(response.category),
    targets: (response.targets ?? []).join(', '),
    unit: unitText(unit),
    targetSum: measured(formatInUnit(response.target_sum, unit), response.target_sum),
    baselineSum: measured(formatInUnit(response.baseline_sum, unit), response.baseline_sum),
    nadirSum: measured(formatInUnit(response.nadir_sum, unit), response.nadir_sum),
    changeFromBaseline: measured(formatPercent(response.change_from_baseline_percent), response.change_from_baseline_percent),
    changeFromNadir: measured(formatPercent(response.change_from_nadir_percent), response.change_from_nadir_percent),
    reasons: response.reasons ?? [],
  };
}

function responseNote(focus: TimePoint | null, lesions: readonly LesionRecord[] | null | undefined, response: ResponseAssessment | null | undefined): string | null {
  if (response) {
    return null;
  }
  if (response === null && Array.isArray(lesions)) {
    return focus && focus.baseline_study_instance_uid
      ? 'No response assessed for this visit.'
      : 'First visit: the baseline of the response assessment (assessed from the next visit on).';
  }
  if (focus && !focus.error && response === undefined) {
    return 'No response assessment: this study was analysed before lesion tracking.';
  }
  return null;
}

/**
 * Each visit's sum of target lesions for the chart, in the reference response's unit and criteria: the
 * visit's own `target_sum`, and for the first visit the reference's `baseline_sum`.
 */
function targetSums(ordered: readonly TimePoint[], reference: ResponseAssessment | null): Map<string, number | null> {
  const sums = new Map<string, number | null>();
  if (!reference) {
    return sums;
  }
  ordered.forEach((t, index) => {
    const r = t.response;
    if (r && r.unit === reference.unit && r.criteria === reference.criteria) {
      sums.set(t.study_instance_uid, r.target_sum);
    } else if (index === 0 && Array.isArray(t.lesions)) {
      sums.set(t.study_instance_uid, reference.baseline_sum);
    }
  });
  return sums;
}

function timelineNote(timeline: Loadable<PatientTimeline>): string | null {
  switch (timeline.status) {
    case 'idle':
      return 'Waiting for the study’s PatientID…';
    case 'loading':
      return 'Loading the patient timeline…';
    case 'missing':
    case 'error':
      return timeline.message;
    case 'loaded':
      return timeline.value.time_points.length ? null : 'No time point yet for this patient.';
  }
}

export function buildPanelView(input: PanelModelInput): PanelView {
  const job = input.job.status === 'loaded' ? input.job.value : null;
  const timeline = input.timeline.status === 'loaded' ? input.timeline.value : null;
  const focus = timeline?.time_points.find((t) => t.study_instance_uid === input.focusStudyUid) ?? null;
  // The timeline is recomputed when a baseline arrives later; the job's own copy is the fallback.
  const comparison = focus ? (focus.comparison ?? null) : job?.state === 'done' ? (job.outputs.longitudinal?.comparison ?? null) : null;
  // Lesions and response (issue 18): absent (undefined) in time points and jobs stored before.
  const jobLongitudinal = !focus && job?.state === 'done' ? job.outputs.longitudinal : undefined;
  const focusLesions = focus ? focus.lesions : jobLongitudinal?.lesions;
  const focusResponse = focus ? focus.response : jobLongitudinal?.response;
  const reference = referenceResponse(focusResponse ?? null, timeline);
  const sums = timeline ? targetSums(inDateOrder(timeline.time_points), reference) : new Map<string, number | null>();

  const chart =
    timeline && timeline.time_points.length
      ? buildTimelineChart(
          timeline.time_points.map((t) => ({
            studyInstanceUid: t.study_instance_uid,
            studyDate: t.study_date,
            volumeCm3: t.measurements?.volume_cm3 ?? null,
            ci95Cm3: t.measurements?.volume_ci95_cm3 ?? null,
            isFocus: t.study_instance_uid === input.focusStudyUid,
            isBaseline: !!focus && t.study_instance_uid === focus.baseline_study_instance_uid,
            targetSum: sums.get(t.study_instance_uid) ?? null,
          })),
          input.chartLayout ?? DEFAULT_CHART_LAYOUT,
          reference?.unit ?? null,
        )
      : null;
  const knowsFocus = (!!focus && !focus.error) || !!jobLongitudinal;

  return {
    job: buildJobView(input.job, input.timeZone),
    volumes: buildVolumes(focus, comparison),
    comparison: buildComparison(comparison, timeline, focus),
    flag: buildFlag(focus, comparison),
    agreement: buildAgreement(job),
    regions: buildRegionRows(job),
    review: job?.outputs.plausibility?.review ? job.outputs.plausibility.verdict : null,
    experts: buildExpertRows(job),
    report: buildReport(focus, job),
    timelineNote: timelineNote(input.timeline),
    chart,
    timePoints: timeline ? buildTimePointRows(timeline, input.focusStudyUid, input.viewerStudyUids) : [],
    refinements: (job?.refinements ?? []).map((r) => ({
      version: r.version,
      sopInstanceUid: r.sop_instance_uid,
      volume: measured(formatVolume(r.volume_cm3), r.volume_cm3),
    })),
    lesions: knowsFocus ? buildLesionTable(input.focusStudyUid, focusLesions, timeline, reference?.unit ?? null) : null,
    response: focusResponse ? buildResponse(focusResponse) : null,
    responseNote: knowsFocus ? responseNote(focus, focusLesions, focusResponse) : null,
  };
}
