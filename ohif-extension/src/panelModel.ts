/**
 * The panel's view model: OncoFlow's JSON (study job + patient timeline) -> rows, labels and
 * chart geometry. Pure and synchronous; numbers are only formatted, never recomputed, and
 * each displayed number keeps the route's raw value for the `data-value` attribute.
 */

import type {
  Comparison,
  ExpertSummary,
  JobState,
  PatientTimeline,
  StudyJob,
  TimePoint,
} from './api';
import {
  formatClock,
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
          })),
          input.chartLayout ?? DEFAULT_CHART_LAYOUT,
        )
      : null;

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
  };
}
