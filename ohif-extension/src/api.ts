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
      throw new OncoFlowApiError(response.status, errorMessage(body, response), url);
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
