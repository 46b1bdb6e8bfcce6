/**
 * OncoFlow's JSON routes on the Orthanc origin: typed payloads and fetch wrappers.
 *
 * The payload interfaces mirror what `oncoflow/api` answers (through `orthanc-plugins/oncoflow_plugin`)
 * (`Job.as_json`, `PatientTimeline._update_time_point`, `Comparison.as_json`,
 * `Refinement.refine`). Fields the panel does not read are typed loosely or omitted.
 */

// -- payloads --------------------------------------------------------------------------------

export type JobState = 'queued' | 'running' | 'done' | 'failed';

/** A closed interval `[low, high]`. */
export type Interval = [number, number];

export interface JobEvent {
  message: string;
  /** Seconds since the Unix epoch. */
  at: number;
}

export interface FusionSummary {
  strategy: string;
  /** Mean pairwise Dice between the experts; null with fewer than two experts. */
  agreement_score: number | null;
  /** `high`, `review`, `low` or `single expert`. */
  flag: string;
  volume_cm3?: number;
  runtime_s?: number;
}

/** One BraTS tumour region fused across the panel (`RegionFusion.summary`). */
export interface RegionSummary {
  /** e.g. `Tumour core`. */
  name: string;
  volume_cm3: number | null;
  /** Mean pairwise Dice of the experts that segment this region; null with fewer than two. */
  agreement_score: number | null;
  flag: string;
  experts: string[];
}

/** The plausibility guard on the fused segmentation (`Plausibility.as_json`). */
export interface PlausibilitySummary {
  review: boolean;
  /** `plausible`, or `segmentation implausible: review (reasons)`. */
  verdict: string;
  reasons: string[];
}

export interface PanelRunSummary {
  ran: string[];
  /** Expert name -> why it did not run. */
  skipped: Record<string, string>;
  wall_s?: number;
  experts_s?: number;
}

export interface ExpertSummary {
  /** `ran`, `skipped` or `failed`. */
  status: string;
  reason: string | null;
  version: string | null;
  role?: string | null;
  runtime_s: number | null;
  /** Present for experts that ran (measured against the fused mask). */
  volume_cm3?: number | null;
  dice_vs_fused?: number | null;
  iou_vs_fused?: number | null;
  seg_sop_instance_uid?: string;
}

export interface RegistrationSummary {
  method: string;
  ncc_before: number;
  ncc_after: number;
  seconds?: number;
  resegmented?: boolean;
}

export interface Comparison {
  baseline_study_instance_uid?: string;
  follow_up_study_instance_uid?: string;
  volume_baseline_cm3: number;
  volume_follow_up_cm3: number;
  delta_cm3: number;
  /** Null when the baseline has no tumour volume. */
  percent_change: number | null;
  percent_change_ci95: Interval | null;
  delta_ci95_cm3?: Interval | null;
  dice: number;
  hd95_mm: number | null;
  growth_rate_cm3_per_day: number | null;
  days_between: number;
  registration: RegistrationSummary;
  flag: string;
  flag_reason: string;
  /** `[baseline, follow-up]`. */
  longest_axial_diameter_mm?: Interval;
  max_caliper_mm?: Interval;
  /** 4x4 row-major affine, follow-up LPS mm -> baseline LPS mm. */
  follow_up_to_baseline_lps?: number[];
}

export interface ReportOutcome {
  report_sop_instance_uid?: string | null;
  error?: string;
  report_s?: number;
}

export interface LongitudinalOutput {
  sr_sop_instance_uid?: string | null;
  baseline_study_instance_uid?: string | null;
  comparison?: Comparison | null;
  /** This visit's lesions (issue 18); absent in jobs stored before. */
  lesions?: LesionRecord[] | null;
  /** This visit's response against the first visit; null for the first visit, absent in jobs stored before. */
  response?: ResponseAssessment | null;
  report?: ReportOutcome | null;
  /** The radiologist's approved segmentation in force when the timeline was computed (what was measured). */
  approved_segmentation?: ApprovalInForce | null;
  error?: string;
}

export interface JobOutputs {
  /** The driving region's fused volume. */
  tumour_volume_cm3?: number;
  /** `ET`, `TC` or `WT`: the region volumes, diameters and the change are measured on. */
  driving_region?: string;
  /** Region (`ET`, `TC`, `WT`) -> its fused summary; only the regions the panel could segment. */
  regions?: Record<string, RegionSummary>;
  plausibility?: PlausibilitySummary;
  fusion?: FusionSummary;
  panel?: PanelRunSummary;
  experts?: Record<string, ExpertSummary>;
  longitudinal?: LongitudinalOutput;
  seg_sop_instance_uids?: string[];
  seg_series_instance_uid?: string;
  ensemble_seg_sop_instance_uid?: string;
  input_images?: number;
}

export interface JobHistoryEntry {
  job_id: number;
  state: JobState;
  error: string | null;
  trigger: string;
  created_at: number;
}

export interface RefinementEntry {
  version: number;
  sop_instance_uid: string;
  volume_cm3: number | null;
  created_at: number;
}

/** `GET /oncoflow/studies/{StudyInstanceUID}`: the study's latest job. */
export interface StudyJob {
  job_id: number;
  study_instance_uid: string | null;
  state: JobState;
  error: string | null;
  attempts?: number;
  trigger?: string;
  created_at?: number;
  updated_at?: number;
  timings_s: Record<string, number>;
  outputs: JobOutputs;
  events: JobEvent[];
  history?: JobHistoryEntry[];
  refinements?: RefinementEntry[];
  /** The radiologist's approved segmentation in force (with its `statement`); null: the automatic one is measured. */
  approved_segmentation?: SegmentationApproval | null;
}

export interface TimePointMeasurements {
  volume_cm3: number;
  volume_ci95_cm3: Interval | null;
  experts_mean_volume_cm3: number | null;
  longest_axial_diameter_mm: number;
  max_caliper_mm: number;
}

/** A lesion's tracking status at a visit (`lesion_tracking.lesion_row`). */
export type LesionStatus = 'baseline' | 'continued' | 'merged' | 'split' | 'new';

/** A pair of points, patient LPS mm: a diameter's two endpoints. */
export type LpsSegment = [[number, number, number], [number, number, number]];

/** One lesion of one visit (`oncoflow.pipeline.lesion_tracking.lesion_row`). */
export interface LesionRecord {
  /** The label in the visit's own lesion image (1 = largest). */
  label: number;
  /** `Lesion 1`, …: the same lesion keeps it across visits; a new one takes a number never used. */
  tracking_id: string;
  status: LesionStatus | string;
  /** Identifiers of the lesions merged into this one (besides its own). */
  merged_ids: string[];
  /** The identifier of the lesion this part split off from. */
  split_from: string | null;
  /** A RANO target lesion (chosen at the first visit; later, the response's `targets`). */
  target: boolean;
  volume_cm3: number;
  longest_diameter_mm: number;
  perpendicular_diameter_mm: number;
  /** Bidimensional product (longest × perpendicular diameter). */
  product_mm2: number;
  max_caliper_mm: number;
  measurable: boolean;
  /** Why it is not measurable (empty when measurable). */
  not_measurable: string[];
  centroid_lps_mm: [number, number, number];
  long_axis_lps_mm: LpsSegment | null;
  perpendicular_axis_lps_mm: LpsSegment | null;
}

export type ResponseCategory = 'CR' | 'PR' | 'MR' | 'SD' | 'PD';

/** A visit's response against the first visit (`oncoflow.pipeline.lesion_tracking.response_json`). */
export interface ResponseAssessment {
  /** e.g. `RANO 2.0, volumetric`. */
  criteria: string;
  category: ResponseCategory | string;
  /** `preliminary`, `confirmed` or `not needed`. */
  confirmation: string;
  /** e.g. `PR (preliminary)`. */
  label: string;
  /** Tracking identifiers of the target lesions. */
  targets: string[];
  /** Unit of the sums: `cm3` (volumes), `mm2` (products) or `mm` (diameters). */
  unit: 'cm3' | 'mm2' | 'mm' | string;
  target_sum: number | null;
  baseline_sum: number | null;
  nadir_sum: number | null;
  change_from_baseline_percent: number | null;
  change_from_nadir_percent: number | null;
  reasons: string[];
}

export interface TimePoint {
  study_instance_uid: string;
  /** `YYYY-MM-DD`. */
  study_date: string;
  baseline_study_instance_uid: string | null;
  /** Why this time point has no (new) result; its other fields may then be missing. */
  error: string | null;
  measurements?: TimePointMeasurements | null;
  comparison?: Comparison | null;
  seg_sop_instance_uid?: string | null;
  sr_sop_instance_uid?: string | null;
  reg_sop_instance_uid?: string | null;
  report_sop_instance_uid?: string | null;
  report_error?: string | null;
  /** The visit's lesions (issue 18); absent in time points stored before. */
  lesions?: LesionRecord[] | null;
  /** The visit's response against the first visit; null for the first, absent in time points stored before. */
  response?: ResponseAssessment | null;
  /** What a clinician entered for this visit (status, steroid dose); null or absent when nothing was entered. */
  clinical?: ClinicalEntry | null;
}

/** A clinician's assessment of a visit, which RANO's response reads beside the images. */
export type ClinicalStatus = 'improved' | 'stable' | 'worse';

export const CLINICAL_STATUSES: readonly ClinicalStatus[] = ['improved', 'stable', 'worse'];

/** `PUT /oncoflow/studies/{uid}/clinical-state` body: null for "not known" (never read as stable). */
export interface ClinicalEntry {
  status: ClinicalStatus | null;
  /** Dexamethasone-equivalent dose, mg per day (0 for none). */
  steroid_mg_per_day: number | null;
}

/** `GET` / `PUT /oncoflow/studies/{uid}/clinical-state` answer (fields null when nothing was entered). */
export interface ClinicalStateAnswer extends ClinicalEntry {
  study_instance_uid: string;
  entered_by: string | null;
  /** When it was entered, as the route gives it (ISO text or seconds since the epoch). */
  entered_at: string | number | null;
  /** The visit's response recomputed with the entry (the PUT's answer); null or absent otherwise. */
  response?: ResponseAssessment | null;
}

/** `GET /oncoflow/patients/{PatientID}/timeline`. */
export interface PatientTimeline {
  patient_id: string;
  baseline_rule: string;
  time_points: TimePoint[];
}

/** `POST /oncoflow/studies/{uid}/reanalyse` answers 202 with this. */
export interface ReanalyseAccepted {
  job_id: number;
  state?: JobState;
}

export interface RefinePoint {
  /** Patient coordinates, LPS mm. */
  position_mm: [number, number, number];
  positive: boolean;
}

export interface RefineRequest {
  points: RefinePoint[];
  include_current: boolean;
}

/** `POST /oncoflow/studies/{uid}/refine` answers 200 with this. */
export interface RefineResult {
  study_instance_uid?: string;
  version: number;
  sop_instance_uid: string;
  series_instance_uid?: string;
  volume_cm3?: number;
  model?: { name: string; version: string | null };
  inference_s?: number;
}

/** A radiologist's approval of a SEG as the study's tumour (`JobStore._approval`). */
export interface SegmentationApproval {
  approval_id?: number;
  study_instance_uid?: string;
  sop_instance_uid: string;
  series_instance_uid?: string | null;
  /** The SEG's segments that are the tumour. */
  segment_numbers: number[];
  /** e.g. `refined SEG v2`, `SEG stored by OHIF ('Tumour')`. */
  source: string;
  input_series_instance_uid?: string | null;
  volume_cm3: number | null;
  approved_by: string;
  /** `radiologist`, or `anonymous` with login off. */
  approved_role: string;
  /** Seconds since the Unix epoch. */
  approved_at: number;
  withdrawn_by?: string | null;
  withdrawn_at?: number | null;
  /** `approved by radiologist alice, 2026-03-01 10:15 UTC` (the study route adds it). */
  statement?: string;
}

/** The approval in force and how far the automatic result is from it (`approved_segmentation.summary`). */
export interface ApprovalInForce {
  sop_instance_uid?: string;
  statement?: string;
  volume_cm3?: number | null;
  automatic_volume_cm3?: number | null;
  dice_vs_automatic?: number | null;
  volume_change_percent?: number | null;
  /** True: the automatic result differs a lot from the approved segmentation (review the approval). */
  automatic_differs?: boolean | null;
  /** The same in words. */
  note?: string;
  /** Why the approved SEG could not be compared (no longer in the PACS, no longer fits the input). */
  error?: string;
}

/** `GET /oncoflow/studies/{uid}/approved-seg`. */
export interface ApprovedSegAnswer {
  study_instance_uid?: string;
  /** Null: the automatic (panel ensemble) SEG is measured. */
  approval: SegmentationApproval | null;
  statement: string | null;
  measured_seg_sop_instance_uid: string | null;
  automatic_seg_sop_instance_uid: string | null;
  /** Every approval of the study, withdrawn ones included, oldest first. */
  history: SegmentationApproval[];
}

/** `POST /oncoflow/studies/{uid}/approved-seg` body. */
export interface ApproveSegRequest {
  sop_instance_uid: string;
  /** The tumour's segments; left out, the route finds them from the SEG's codes (422 when it cannot). */
  segment_numbers?: number[];
}

/** What a recomputed timeline answers after an approval or a withdrawal (`PatientTimeline.update`). */
export interface TimelineOutcome {
  error?: string;
  response?: ResponseAssessment | null;
  [key: string]: unknown;
}

/** `POST /oncoflow/studies/{uid}/approved-seg` answers 200 with this. */
export interface ApproveSegResult {
  approval: SegmentationApproval;
  statement: string;
  automatic_seg_sop_instance_uid: string | null;
  in_force: ApprovalInForce;
  timeline: TimelineOutcome | null;
}

/** `DELETE /oncoflow/studies/{uid}/approved-seg` answers 200 with this. */
export interface WithdrawSegResult {
  withdrawn: SegmentationApproval;
  timeline: TimelineOutcome | null;
}

/** A SEG instance of a study, from a QIDO-RS search (`/oncoflow/dicom-web/studies/{uid}/instances?Modality=SEG`). */
export interface StudySeg {
  sopInstanceUid: string;
  seriesInstanceUid: string | null;
  seriesDescription: string | null;
  seriesNumber: number | null;
  manufacturer: string | null;
}

// -- URLs ------------------------------------------------------------------------------------

/** One path segment, percent-encoded (a PatientID may hold spaces, slashes, `?`, `#`, `%`). */
export function pathSegment(value: string): string {
  return encodeURIComponent(value);
}

function joinBase(baseUrl: string, path: string): string {
  return `${baseUrl.replace(/\/+$/, '')}${path}`;
}

export function studyJobUrl(baseUrl: string, studyInstanceUid: string): string {
  return joinBase(baseUrl, `/oncoflow/studies/${pathSegment(studyInstanceUid)}`);
}

export function reanalyseUrl(baseUrl: string, studyInstanceUid: string): string {
  return `${studyJobUrl(baseUrl, studyInstanceUid)}/reanalyse`;
}

export function refineUrl(baseUrl: string, studyInstanceUid: string): string {
  return `${studyJobUrl(baseUrl, studyInstanceUid)}/refine`;
}

export function timelineUrl(baseUrl: string, patientId: string): string {
  return joinBase(baseUrl, `/oncoflow/patients/${pathSegment(patientId)}/timeline`);
}

export function clinicalStateUrl(baseUrl: string, studyInstanceUid: string): string {
  return `${studyJobUrl(baseUrl, studyInstanceUid)}/clinical-state`;
}

export function approvedSegUrl(baseUrl: string, studyInstanceUid: string): string {
  return `${studyJobUrl(baseUrl, studyInstanceUid)}/approved-seg`;
}

/** The QIDO-RS proxy OHIF searches through (`app-config.js` `qidoRoot`). */
export const QIDO_ROOT = '/oncoflow/dicom-web';
/** SeriesDescription, Manufacturer, SeriesNumber: one comma-separated `includefield` (the proxy splits it). */
export const SEG_INCLUDE_FIELDS = ['0008103E', '00080070', '00200011'];

/** The study's SEG instances, QIDO-RS. */
export function studySegsUrl(baseUrl: string, studyInstanceUid: string): string {
  const query = `Modality=SEG&includefield=${SEG_INCLUDE_FIELDS.join('%2C')}`;
  return joinBase(baseUrl, `${QIDO_ROOT}/studies/${pathSegment(studyInstanceUid)}/instances?${query}`);
}

export function reportPdfUrl(baseUrl: string, reportSopInstanceUid: string): string {
  return joinBase(baseUrl, `/oncoflow/reports/${pathSegment(reportSopInstanceUid)}.pdf`);
}

// -- client ----------------------------------------------------------------------------------

/** A route answered with a status the caller did not expect; `message` is the route's `error`. */
export class OncoFlowApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly url: string,
    /** The refusal's JSON body, for what it carries beside `error` (e.g. a 422's `segments`). */
    readonly body: unknown = null,
  ) {
    super(message);
    this.name = 'OncoFlowApiError';
  }
}

export type FetchFunction = (input: string, init?: RequestInit) => Promise<Response>;

export interface OncoFlowApiOptions {
  /** Origin or path prefix of the routes; '' means the page's own origin. */
  baseUrl?: string;
  fetch?: FetchFunction;
  /** Extra headers per request, e.g. OHIF's `Authorization` when the viewer signs in. */
  headers?: () => Record<string, string> | undefined;
}

export interface OncoFlowApi {
  /** The study's latest job, or null when OncoFlow has none (404). */
  studyJob(studyInstanceUid: string): Promise<StudyJob | null>;
  /** The patient's time points, or null when OncoFlow has none (404). */
  patientTimeline(patientId: string): Promise<PatientTimeline | null>;
  reanalyse(studyInstanceUid: string): Promise<ReanalyseAccepted>;
  refine(studyInstanceUid: string, request: RefineRequest): Promise<RefineResult>;
  reportPdfUrl(reportSopInstanceUid: string): string;
  /** The clinical state entered for the study's visit (fields null when none was entered). */
  clinicalState(studyInstanceUid: string): Promise<ClinicalStateAnswer>;
  /** Records the clinical state; the answer carries the recomputed response. 4xx: OncoFlowApiError with the route's `error`. */
  saveClinicalState(studyInstanceUid: string, entry: ClinicalEntry): Promise<ClinicalStateAnswer>;
  /** Which segmentation of the study is measured: the approval in force (null: the automatic one) and the history. */
  approvedSeg(studyInstanceUid: string): Promise<ApprovedSegAnswer>;
  /** Approves a SEG as the study's tumour. 4xx: OncoFlowApiError with the route's `error` (422 with several segments lists them). */
  approveSeg(studyInstanceUid: string, request: ApproveSegRequest): Promise<ApproveSegResult>;
  /** Withdraws the approval in force (404 when there is none): the automatic result is measured again. */
  withdrawSegApproval(studyInstanceUid: string): Promise<WithdrawSegResult>;
  /** The study's SEG instances (QIDO-RS), OncoFlow's automatic ones included. */
  studySegs(studyInstanceUid: string): Promise<StudySeg[]>;
  /**
   * True when requests carry headers of their own (the viewer signed in: `Authorization: Bearer …`).
   * A plain link (a new tab) sends none of them, so the signed PDF is then fetched with `reportPdf`.
   */
  sendsAuthorization(): boolean;
  /** The signed PDF, fetched with the request headers; rejects with OncoFlowApiError unless it is a PDF. */
  reportPdf(reportSopInstanceUid: string): Promise<Blob>;
}

async function readJson(response: Response): Promise<unknown> {
  const text = await response.text();
  if (!text) {
    return null;
  }
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}

function errorMessage(body: unknown, response: Response): string {
  if (body && typeof body === 'object' && 'error' in body && typeof body.error === 'string') {
    return body.error;
  }
  if (typeof body === 'string' && body.trim()) {
    return body.trim().slice(0, 300);
  }
  return `HTTP ${response.status} ${response.statusText}`.trim();
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Checks the fields the panel relies on; throws on a payload of another shape. */
export function asStudyJob(value: unknown, url: string): StudyJob {
  if (!isRecord(value) || typeof value.state !== 'string') {
    throw new OncoFlowApiError(200, 'the study route did not answer a job (no "state")', url);
  }
  return {
    ...value,
    timings_s: isRecord(value.timings_s) ? value.timings_s : {},
    outputs: isRecord(value.outputs) ? value.outputs : {},
    events: Array.isArray(value.events) ? value.events : [],
  } as unknown as StudyJob;
}

export function asPatientTimeline(value: unknown, url: string): PatientTimeline {
  if (!isRecord(value) || !Array.isArray(value.time_points)) {
    throw new OncoFlowApiError(200, 'the timeline route did not answer time points', url);
  }
  return value as unknown as PatientTimeline;
}

function isClinicalStatus(value: unknown): value is ClinicalStatus {
  return typeof value === 'string' && (CLINICAL_STATUSES as readonly string[]).includes(value);
}

/** Checks a clinical-state answer field by field; throws on a payload of another shape. */
export function asClinicalStateAnswer(value: unknown, url: string, status = 200): ClinicalStateAnswer {
  const fail = (why: string): never => {
    throw new OncoFlowApiError(status, `the clinical-state route answered an unexpected body: ${why}`, url);
  };
  if (!isRecord(value)) {
    return fail('not an object');
  }
  const { study_instance_uid: uid, status: clinicalStatus, steroid_mg_per_day: dose, entered_by: by, entered_at: at } = value;
  if (typeof uid !== 'string' || !uid) {
    fail('no study_instance_uid');
  }
  if (clinicalStatus !== null && clinicalStatus !== undefined && !isClinicalStatus(clinicalStatus)) {
    fail(`status ${JSON.stringify(clinicalStatus)}`);
  }
  if (dose !== null && dose !== undefined && (typeof dose !== 'number' || !Number.isFinite(dose))) {
    fail(`steroid_mg_per_day ${JSON.stringify(dose)}`);
  }
  if (by !== null && by !== undefined && typeof by !== 'string') {
    fail('entered_by is not text');
  }
  if (at !== null && at !== undefined && typeof at !== 'string' && typeof at !== 'number') {
    fail('entered_at is neither text nor a number');
  }
  const response = value.response;
  if (response !== null && response !== undefined && (!isRecord(response) || typeof response.category !== 'string')) {
    fail('response is not a response (no category)');
  }
  return {
    study_instance_uid: uid as string,
    status: (clinicalStatus ?? null) as ClinicalStatus | null,
    steroid_mg_per_day: (dose ?? null) as number | null,
    entered_by: (by ?? null) as string | null,
    entered_at: (at ?? null) as string | number | null,
    response: (response ?? null) as ResponseAssessment | null,
  };
}

/** Checks an approval (the fields the panel shows); throws on a payload of another shape. */
export function asSegmentationApproval(value: unknown, url: string, status = 200): SegmentationApproval {
  const fail = (why: string): never => {
    throw new OncoFlowApiError(status, `the approved-seg route answered an unexpected approval: ${why}`, url);
  };
  if (!isRecord(value)) {
    return fail('not an object');
  }
  if (typeof value.sop_instance_uid !== 'string' || !value.sop_instance_uid) {
    fail('no sop_instance_uid');
  }
  const numbers = value.segment_numbers;
  if (!Array.isArray(numbers) || !numbers.every((n) => typeof n === 'number' && Number.isInteger(n))) {
    fail('segment_numbers is not a list of numbers');
  }
  if (typeof value.approved_by !== 'string' || typeof value.approved_role !== 'string') {
    fail('approved_by / approved_role is not text');
  }
  if (typeof value.approved_at !== 'number' || !Number.isFinite(value.approved_at)) {
    fail('approved_at is not a number');
  }
  if (value.volume_cm3 !== null && value.volume_cm3 !== undefined && typeof value.volume_cm3 !== 'number') {
    fail('volume_cm3 is not a number');
  }
  return {
    ...value,
    source: typeof value.source === 'string' ? value.source : '',
    volume_cm3: typeof value.volume_cm3 === 'number' ? value.volume_cm3 : null,
  } as unknown as SegmentationApproval;
}

function optionalText(value: unknown): string | null {
  return typeof value === 'string' && value ? value : null;
}

function asTimelineOutcome(value: unknown): TimelineOutcome | null {
  return isRecord(value) ? (value as TimelineOutcome) : null;
}

/** Checks the GET answer of `…/approved-seg`. */
export function asApprovedSegAnswer(value: unknown, url: string): ApprovedSegAnswer {
  if (!isRecord(value) || !('approval' in value)) {
    throw new OncoFlowApiError(200, 'the approved-seg route did not answer an approval (no "approval")', url);
  }
  const approval = value.approval === null ? null : asSegmentationApproval(value.approval, url);
  return {
    ...(typeof value.study_instance_uid === 'string' ? { study_instance_uid: value.study_instance_uid } : {}),
    approval,
    statement: optionalText(value.statement) ?? approval?.statement ?? null,
    measured_seg_sop_instance_uid: optionalText(value.measured_seg_sop_instance_uid),
    automatic_seg_sop_instance_uid: optionalText(value.automatic_seg_sop_instance_uid),
    history: Array.isArray(value.history) ? value.history.map((entry) => asSegmentationApproval(entry, url)) : [],
  };
}

/** Checks the POST answer of `…/approved-seg`. */
export function asApproveSegResult(value: unknown, url: string): ApproveSegResult {
  if (!isRecord(value)) {
    throw new OncoFlowApiError(200, 'the approved-seg route did not answer an approval', url);
  }
  const approval = asSegmentationApproval(value.approval, url);
  return {
    approval,
    statement: optionalText(value.statement) ?? '',
    automatic_seg_sop_instance_uid: optionalText(value.automatic_seg_sop_instance_uid),
    in_force: isRecord(value.in_force) ? (value.in_force as ApprovalInForce) : {},
    timeline: asTimelineOutcome(value.timeline),
  };
}

/** Checks the DELETE answer of `…/approved-seg`. */
export function asWithdrawSegResult(value: unknown, url: string): WithdrawSegResult {
  if (!isRecord(value)) {
    throw new OncoFlowApiError(200, 'the approved-seg route did not answer the withdrawn approval', url);
  }
  return { withdrawn: asSegmentationApproval(value.withdrawn, url), timeline: asTimelineOutcome(value.timeline) };
}

/** The first value of a DICOM JSON element (`{"vr": "LO", "Value": ["x"]}`), or null. */
function dicomJsonValue(dataset: Record<string, unknown>, tag: string): unknown {
  const element = dataset[tag];
  const values = isRecord(element) ? element.Value : undefined;
  return Array.isArray(values) && values.length ? values[0] : null;
}

const SEGMENTATION_STORAGE = '1.2.840.10008.5.1.4.1.1.66.4';

/** SEG instances of a QIDO-RS answer (DICOM JSON); other modalities and entries without a SOP Instance UID are left out. */
export function studySegsFromQido(value: unknown): StudySeg[] {
  if (!Array.isArray(value)) {
    return [];
  }
  const segs: StudySeg[] = [];
  for (const dataset of value) {
    if (!isRecord(dataset)) {
      continue;
    }
    const sop = dicomJsonValue(dataset, '00080018');
    const modality = dicomJsonValue(dataset, '00080060');
    const sopClass = dicomJsonValue(dataset, '00080016');
    const isSeg = modality === 'SEG' || (modality === null && sopClass === SEGMENTATION_STORAGE);
    if (typeof sop !== 'string' || !sop || !isSeg || segs.some((s) => s.sopInstanceUid === sop)) {
      continue;
    }
    const number = dicomJsonValue(dataset, '00200011');
    const parsedNumber = typeof number === 'number' ? number : typeof number === 'string' && number.trim() ? Number(number) : NaN;
    segs.push({
      sopInstanceUid: sop,
      seriesInstanceUid: optionalText(dicomJsonValue(dataset, '0020000E')),
      seriesDescription: optionalText(dicomJsonValue(dataset, '0008103E')),
      seriesNumber: Number.isFinite(parsedNumber) ? parsedNumber : null,
      manufacturer: optionalText(dicomJsonValue(dataset, '00080070')),
    });
  }
  return segs;
}

function asRefineResult(value: unknown, url: string): RefineResult {
  if (!isRecord(value) || typeof value.sop_instance_uid !== 'string' || typeof value.version !== 'number') {
    throw new OncoFlowApiError(200, 'the refine route did not answer a SEG (sop_instance_uid, version)', url);
  }
  return value as unknown as RefineResult;
}

function asReanalyseAccepted(value: unknown, url: string): ReanalyseAccepted {
  if (!isRecord(value) || typeof value.job_id !== 'number') {
    throw new OncoFlowApiError(202, 'the reanalyse route did not answer a job_id', url);
  }
  return value as unknown as ReanalyseAccepted;
}

/** The extra headers of this moment (OHIF's token changes when it is renewed); `{}` when there are none. */
function extraHeaders(options: OncoFlowApiOptions): Record<string, string> {
  const headers = options.headers?.();
  return headers && typeof headers === 'object' ? headers : {};
}

export function createOncoFlowApi(options: OncoFlowApiOptions = {}): OncoFlowApi {
  const baseUrl = options.baseUrl ?? '';
  const fetchFn: FetchFunction = options.fetch ?? ((input, init) => globalThis.fetch(input, init));

  async function request(url: string, init: RequestInit, accepted: number[]): Promise<{ status: number; body: unknown }> {
    const headers: Record<string, string> = { Accept: 'application/json', ...extraHeaders(options) };
    if (init.body !== undefined) {
      headers['Content-Type'] = 'application/json';
    }
    const response = await fetchFn(url, { credentials: 'same-origin', ...init, headers });
    const body = await readJson(response);
    if (!accepted.includes(response.status)) {
      throw new OncoFlowApiError(response.status, errorMessage(body, response), url, body);
    }
    return { status: response.status, body };
  }

  return {
    async studyJob(studyInstanceUid) {
      const url = studyJobUrl(baseUrl, studyInstanceUid);
      const { status, body } = await request(url, { method: 'GET' }, [200, 404]);
      return status === 404 ? null : asStudyJob(body, url);
    },
    async patientTimeline(patientId) {
      const url = timelineUrl(baseUrl, patientId);
      const { status, body } = await request(url, { method: 'GET' }, [200, 404]);
      return status === 404 ? null : asPatientTimeline(body, url);
    },
    async reanalyse(studyInstanceUid) {
      const url = reanalyseUrl(baseUrl, studyInstanceUid);
      const { body } = await request(url, { method: 'POST', body: '{}' }, [200, 202]);
      return asReanalyseAccepted(body, url);
    },
    async refine(studyInstanceUid, refineRequest) {
      const url = refineUrl(baseUrl, studyInstanceUid);
      const { body } = await request(url, { method: 'POST', body: JSON.stringify(refineRequest) }, [200]);
      return asRefineResult(body, url);
    },
    reportPdfUrl(reportSopInstanceUid) {
      return reportPdfUrl(baseUrl, reportSopInstanceUid);
    },
    async clinicalState(studyInstanceUid) {
      const url = clinicalStateUrl(baseUrl, studyInstanceUid);
      const { body } = await request(url, { method: 'GET' }, [200]);
      return asClinicalStateAnswer(body, url);
    },
    async saveClinicalState(studyInstanceUid, entry) {
      const url = clinicalStateUrl(baseUrl, studyInstanceUid);
      const body = JSON.stringify({ status: entry.status, steroid_mg_per_day: entry.steroid_mg_per_day });
      const answer = await request(url, { method: 'PUT', body }, [200]);
      return asClinicalStateAnswer(answer.body, url);
    },
    async approvedSeg(studyInstanceUid) {
      const url = approvedSegUrl(baseUrl, studyInstanceUid);
      const { body } = await request(url, { method: 'GET' }, [200]);
      return asApprovedSegAnswer(body, url);
    },
    async approveSeg(studyInstanceUid, approveRequest) {
      const url = approvedSegUrl(baseUrl, studyInstanceUid);
      const sent: ApproveSegRequest = { sop_instance_uid: approveRequest.sop_instance_uid };
      if (approveRequest.segment_numbers?.length) {
        sent.segment_numbers = [...approveRequest.segment_numbers];
      }
      const { body } = await request(url, { method: 'POST', body: JSON.stringify(sent) }, [200]);
      return asApproveSegResult(body, url);
    },
    async withdrawSegApproval(studyInstanceUid) {
      const url = approvedSegUrl(baseUrl, studyInstanceUid);
      const { body } = await request(url, { method: 'DELETE' }, [200]);
      return asWithdrawSegResult(body, url);
    },
    async studySegs(studyInstanceUid) {
      const url = studySegsUrl(baseUrl, studyInstanceUid);
      const { body } = await request(url, { method: 'GET' }, [200, 204]);
      return studySegsFromQido(body);
    },
    sendsAuthorization() {
      return Object.keys(extraHeaders(options)).length > 0;
    },
    async reportPdf(reportSopInstanceUid) {
      const url = reportPdfUrl(baseUrl, reportSopInstanceUid);
      const headers: Record<string, string> = { Accept: 'application/pdf', ...extraHeaders(options) };
      const response = await fetchFn(url, { method: 'GET', credentials: 'same-origin', headers });
      if (response.status !== 200) {
        throw new OncoFlowApiError(response.status, errorMessage(await readJson(response), response), url);
      }
      const type = response.headers.get('Content-Type') ?? '';
      if (!type.toLowerCase().startsWith('application/pdf')) {
        throw new OncoFlowApiError(response.status, `the report route answered ${type || 'no Content-Type'}, not a PDF`, url);
      }
      const bytes = await response.arrayBuffer();
      return new Blob([bytes], { type: 'application/pdf' });
    },
  };
}
