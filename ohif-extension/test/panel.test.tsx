// @vitest-environment jsdom
import { act } from 'react';
import { createRoot, type Root } from 'react-dom/client';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { ClinicalEntry, ClinicalStateAnswer, OncoFlowApi, PatientTimeline, RefineRequest, RefineResult, StudyJob } from '../src/api';
import { OncoFlowApiError, reportPdfUrl } from '../src/api';
import { OncoFlowPanel } from '../src/components/OncoFlowPanel';
import type { SeriesShown, SliceShown, SliceTarget, ViewerBridge, ViewerPoint, ViewportLink } from '../src/viewerBridge';
import {
  baselineTimePoint,
  BASELINE_UID,
  doneJob,
  followUpTimePoint,
  FOLLOW_UP_UID,
  lesion,
  lesionTimeline,
  PATIENT_ID,
  response,
  runningJob,
  THIRD_UID,
  timeline,
} from './fixtures';

(globalThis as { IS_REACT_ACT_ENVIRONMENT?: boolean }).IS_REACT_ACT_ENVIRONMENT = true;

const POLL_MS = 15;
const wait = (ms: number) => act(() => new Promise<void>((resolve) => setTimeout(resolve, ms)));

/** Waits (up to 2 s) until `condition` holds, letting React and the poller run. */
async function waitFor(condition: () => boolean, timeoutMs = 2000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) {
      throw new Error('condition not met in time');
    }
    await wait(5);
  }
}

interface FakeApi extends OncoFlowApi {
  jobs: StudyJob[];
  refineCalls: Array<[string, RefineRequest]>;
  reanalyseCalls: string[];
  clinicalCalls: Array<[string, ClinicalEntry]>;
  clinical: ClinicalStateAnswer;
}

function fakeApi(jobs: StudyJob[], patientTimeline: PatientTimeline | null = timeline()): FakeApi {
  const api: FakeApi = {
    jobs,
    refineCalls: [],
    reanalyseCalls: [],
    clinicalCalls: [],
    clinical: { study_instance_uid: FOLLOW_UP_UID, status: null, steroid_mg_per_day: null, entered_by: null, entered_at: null },
    studyJob: vi.fn(async () => (api.jobs.length > 1 ? (api.jobs.shift() as StudyJob) : (api.jobs[0] ?? null))),
    patientTimeline: vi.fn(async () => patientTimeline),
    reanalyse: vi.fn(async (uid: string) => {
      api.reanalyseCalls.push(uid);
      return { job_id: 99, state: 'queued' as const };
    }),
    refine: vi.fn(async (uid: string, request: RefineRequest): Promise<RefineResult> => {
      api.refineCalls.push([uid, request]);
      return { version: 1, sop_instance_uid: '1.2.9.1', series_instance_uid: '1.2.9', volume_cm3: 15.8 };
    }),
    reportPdfUrl: (uid: string) => reportPdfUrl('', uid),
    sendsAuthorization: () => false,
    reportPdf: vi.fn(async () => new Blob(['%PDF-1.4'], { type: 'application/pdf' })),
    clinicalState: vi.fn(async (uid: string) => ({ ...api.clinical, study_instance_uid: uid })),
    saveClinicalState: vi.fn(async (uid: string, entry: ClinicalEntry) => {
      api.clinicalCalls.push([uid, entry]);
      api.clinical = { study_instance_uid: uid, ...entry, entered_by: 'dr.house', entered_at: '2025-01-02T10:11:12Z', response: response({ label: 'PD (preliminary)' }) };
      return api.clinical;
    }),
    approvedSeg: vi.fn(async (uid: string) => ({
      study_instance_uid: uid,
      approval: null,
      statement: null,
      measured_seg_sop_instance_uid: null,
      automatic_seg_sop_instance_uid: null,
      history: [],
    })),
    approveSeg: vi.fn(async () => {
      throw new OncoFlowApiError(409, 'no approval in this fake', '/x');
    }),
    withdrawSegApproval: vi.fn(async () => {
      throw new OncoFlowApiError(404, 'no approval in this fake', '/x');
    }),
    studySegs: vi.fn(async () => []),
  };
  return api;
}

interface FakeViewer extends ViewerBridge {
  click(point: ViewerPoint): void;
  links: ViewportLink[];
  shown: Array<[string, string | null, string | null]>;
  capturing: boolean;
  segmentations: Array<[string, string]>;
  moves: Array<{ targets: SliceTarget[]; setWindow: boolean }>;
}

function fakeViewer(studyUids: string[]): FakeViewer {
  let onPoint: ((point: ViewerPoint) => void) | null = null;
  const viewer: FakeViewer = {
    links: [],
    shown: [],
    capturing: false,
    segmentations: [],
    moves: [],
    studyInstanceUids: () => studyUids,
    patientId: async () => PATIENT_ID,
    subscribe: () => () => undefined,
    viewportStudies: () => studyUids.map((uid, i) => ({ viewportId: `vp-${i}`, studyInstanceUid: uid })),
    capturePoints(callback) {
      onPoint = callback;
      viewer.capturing = true;
      return () => {
        onPoint = null;
        viewer.capturing = false;
      };
    },
    async showNewSeries(study, series, viewportId): Promise<SeriesShown> {
      viewer.shown.push([study, series, viewportId]);
      return { found: true, displayed: true, message: 'the new SEG is shown in the clicked viewport' };
    },
    registerViewportLinks(links) {
      viewer.links.push(...links);
      return links.length;
    },
    click(point) {
      onPoint?.(point);
    },
    async showSegmentation(viewportId, segSopInstanceUid) {
      viewer.segmentations.push([viewportId, segSopInstanceUid]);
      return { viewportId, shown: true, message: 'SEG shown' };
    },
    async goTo(targets, { setWindow }): Promise<SliceShown[]> {
      viewer.moves.push({ targets, setWindow });
      return targets.map((t) => ({
        viewportId: t.viewportId,
        sliceIndex: 20,
        sliceCount: 40,
        distanceMm: t.positionMm ? 0.4 : null,
        window: setWindow ? { lower: 0, upper: 900, source: 'percentiles' as const } : null,
        problem: '',
      }));
    },
  };
  return viewer;
}

let container: HTMLElement;
let root: Root;

beforeEach(() => {
  container = document.body.appendChild(document.createElement('div'));
  root = createRoot(container);
});

afterEach(() => {
  act(() => root.unmount());
  container.remove();
});

const byTestId = (id: string) => container.querySelector(`[data-testid="${id}"]`);

async function renderPanel(api: OncoFlowApi, viewer: ViewerBridge) {
  await act(async () => {
    root.render(<OncoFlowPanel api={api} viewer={viewer} pollIntervalMs={POLL_MS} timeZone="UTC" />);
  });
  await wait(5);
}

describe('OncoFlow panel', () => {
  it('shows the follow-up’s results with the raw route values next to the text', async () => {
    const api = fakeApi([doneJob()]);
    await renderPanel(api, fakeViewer([FOLLOW_UP_UID, BASELINE_UID]));

    expect(byTestId('oncoflow-panel')?.getAttribute('data-study-instance-uid')).toBe(FOLLOW_UP_UID);
    expect(byTestId('oncoflow-job-state')?.getAttribute('data-value')).toBe('done');
    expect(byTestId('oncoflow-flag')?.textContent).toBe('progression');
    expect(byTestId('oncoflow-flag-reason')?.textContent).toBe('volume +29.8% > +25%');
    expect(byTestId('oncoflow-volume-baseline')?.getAttribute('data-value')).toBe('12.345');
    expect(byTestId('oncoflow-volume-baseline')?.textContent).toBe('12.35 cm³');
    expect(byTestId('oncoflow-volume-follow-up')?.getAttribute('data-value')).toBe('16.02');
    expect(byTestId('oncoflow-percent-change')?.getAttribute('data-value')).toBe('29.77');
    expect(byTestId('oncoflow-percent-change')?.textContent).toBe('+29.8 %');
    expect(container.querySelectorAll('[data-testid="oncoflow-expert-row"]')).toHaveLength(3);
    const regions = [...container.querySelectorAll('[data-testid="oncoflow-region-row"]')];
    expect(regions.map((r) => r.getAttribute('data-region'))).toEqual(['TC', 'WT']); // ET, TC, WT order
    expect(regions.map((r) => r.getAttribute('data-measured'))).toEqual(['true', 'false']);
    expect(regions[1]?.querySelector('[data-testid="oncoflow-region-volume"]')?.getAttribute('data-value')).toBe('41.5');
    expect(regions[1]?.querySelector('[data-testid="oncoflow-region-agreement"]')?.textContent).toBe('— · single expert');
    expect(regions[0]?.textContent).toContain('Tumour core (TC) · measured');
    expect(byTestId('oncoflow-review')).toBeNull(); // plausible: no review banner
    const link = byTestId('oncoflow-report-link') as HTMLAnchorElement;
    expect(link.getAttribute('href')).toBe('/oncoflow/reports/1.2.826.0.1.3680043.8.498.4002.pdf');
    expect(link.target).toBe('_blank');
    expect(byTestId('oncoflow-timeline-chart')?.querySelectorAll('[data-testid="oncoflow-timeline-point"]')).toHaveLength(2);
    expect(api.patientTimeline).toHaveBeenCalledWith(PATIENT_ID);
  });

  it('registers OncoFlow’s registration for linked scrolling when both studies are shown', async () => {
    const viewer = fakeViewer([FOLLOW_UP_UID, BASELINE_UID]);
    await renderPanel(fakeApi([doneJob()]), viewer);
    expect(viewer.links.at(-1)).toMatchObject({ targetViewportId: 'vp-1', sourceViewportId: 'vp-0' });
    expect(byTestId('oncoflow-link-status')?.textContent).toContain('OncoFlow’s registration');
  });

  it('polls a running job live and stops when it is done', async () => {
    const api = fakeApi([runningJob()]);
    await renderPanel(api, fakeViewer([FOLLOW_UP_UID]));
    expect(byTestId('oncoflow-job-state')?.getAttribute('data-value')).toBe('running');
    expect((byTestId('oncoflow-reanalyse') as HTMLButtonElement).disabled).toBe(true);
    await waitFor(() => vi.mocked(api.studyJob).mock.calls.length >= 3); // still polling
    api.jobs = [doneJob()];
    await waitFor(() => byTestId('oncoflow-job-state')?.getAttribute('data-value') === 'done');
    const calls = vi.mocked(api.studyJob).mock.calls.length;
    await wait(POLL_MS * 5);
    expect(vi.mocked(api.studyJob).mock.calls.length).toBe(calls); // stopped
    expect(vi.mocked(api.patientTimeline).mock.calls.length).toBeGreaterThanOrEqual(2); // reloaded once done
  });

  it('re-analyses the focus study and polls the new job', async () => {
    const api = fakeApi([doneJob()]);
    await renderPanel(api, fakeViewer([FOLLOW_UP_UID]));
    api.jobs = [runningJob()];
    await act(async () => {
      (byTestId('oncoflow-reanalyse') as HTMLButtonElement).click();
    });
    await wait(5);
    expect(api.reanalyseCalls).toEqual([FOLLOW_UP_UID]);
    expect(container.textContent).toContain('Re-analysis queued (job 99).');
    await waitFor(() => byTestId('oncoflow-job-state')?.getAttribute('data-value') === 'running');
    api.jobs = [doneJob()];
    await waitFor(() => byTestId('oncoflow-job-state')?.getAttribute('data-value') === 'done');
  });

  it('says why a re-analysis was refused', async () => {
    const api = fakeApi([doneJob()]);
    api.reanalyse = vi.fn(async () => {
      throw new OncoFlowApiError(409, 'a job of this study is already queued', '/x');
    });
    await renderPanel(api, fakeViewer([FOLLOW_UP_UID]));
    await act(async () => (byTestId('oncoflow-reanalyse') as HTMLButtonElement).click());
    await wait(5);
    expect(container.textContent).toContain('a job of this study is already queued (HTTP 409)');
  });

  it('refines at a clicked point in patient mm and shows the new SEG', async () => {
    const api = fakeApi([doneJob()]);
    const viewer = fakeViewer([FOLLOW_UP_UID, BASELINE_UID]);
    await renderPanel(api, viewer);
    const toggle = byTestId('oncoflow-refine-toggle') as HTMLButtonElement;
    await act(async () => toggle.click());
    expect(toggle.getAttribute('aria-pressed')).toBe('true');
    expect(viewer.capturing).toBe(true);

    await act(async () => viewer.click({ viewportId: 'vp-1', studyInstanceUid: BASELINE_UID, positionMm: [10.5, -4, 22], positive: true }));
    await wait(5);
    expect(api.refineCalls).toEqual([
      [BASELINE_UID, { points: [{ position_mm: [10.5, -4, 22], positive: true }], include_current: true }],
    ]);
    expect(viewer.shown).toEqual([[BASELINE_UID, '1.2.9', 'vp-1']]);
    expect(byTestId('oncoflow-refine-status')?.textContent).toContain('Refined SEG v1, 15.80 cm³: the new SEG is shown in the clicked viewport');

    await act(async () => toggle.click());
    expect(viewer.capturing).toBe(false);
  });

  it('shows a refine error (SAM2 not ready)', async () => {
    const api = fakeApi([doneJob()]);
    api.refine = vi.fn(async () => {
      throw new OncoFlowApiError(503, 'no promptable expert (SAM2) is ready to refine (sam2: checkpoint missing)', '/x');
    });
    const viewer = fakeViewer([FOLLOW_UP_UID]);
    await renderPanel(api, viewer);
    await act(async () => (byTestId('oncoflow-refine-toggle') as HTMLButtonElement).click());
    await act(async () => viewer.click({ viewportId: 'vp-0', studyInstanceUid: FOLLOW_UP_UID, positionMm: [0, 0, 0], positive: true }));
    await wait(5);
    expect(byTestId('oncoflow-refine-status')?.textContent).toBe(
      'no promptable expert (SAM2) is ready to refine (sam2: checkpoint missing) (HTTP 503)',
    );
  });

  it('switches the focus to the baseline study', async () => {
    const api = fakeApi([doneJob(BASELINE_UID)]);
    await renderPanel(api, fakeViewer([FOLLOW_UP_UID, BASELINE_UID]));
    const choices = container.querySelectorAll<HTMLButtonElement>('[data-testid="oncoflow-study-choice"]');
    expect([...choices].map((c) => c.textContent)).toEqual(['2024-04-15 (current)', '2024-01-15']);
    await act(async () => choices[1]?.click());
    await wait(5);
    expect(byTestId('oncoflow-panel')?.getAttribute('data-study-instance-uid')).toBe(BASELINE_UID);
    expect(byTestId('oncoflow-flag')?.getAttribute('data-value')).toBe('');
    expect(byTestId('oncoflow-volume-baseline')?.getAttribute('data-value')).toBe('12.345');
    expect(byTestId('oncoflow-volume-follow-up')).toBeNull();
    expect(api.studyJob).toHaveBeenLastCalledWith(BASELINE_UID);
  });

  it('puts the plausibility guard’s review reasons above the numbers', async () => {
    const job = doneJob();
    job.outputs.plausibility = {
      review: true,
      verdict: 'segmentation implausible: review (scattered: 11 separate pieces of 0.1 cm³ or more (> 6))',
      reasons: ['scattered: 11 separate pieces of 0.1 cm³ or more (> 6)'],
    };
    await renderPanel(fakeApi([job]), fakeViewer([FOLLOW_UP_UID, BASELINE_UID]));
    const banner = byTestId('oncoflow-review');
    expect(banner?.textContent).toBe(job.outputs.plausibility.verdict);
    expect(banner?.getAttribute('role')).toBe('alert');
  });

  it('says plainly when OncoFlow has no job and no timeline', async () => {
    const api = fakeApi([], null);
    await renderPanel(api, fakeViewer([FOLLOW_UP_UID]));
    expect(byTestId('oncoflow-job-state')?.textContent).toBe('No OncoFlow job for this study');
    expect(container.textContent).toContain(`No OncoFlow time point for patient ${PATIENT_ID} yet.`);
    expect(byTestId('oncoflow-timeline-chart')).toBeNull();
  });

  it('shows the lesion table, the response and the target sum line of the visit in view', async () => {
    await renderPanel(fakeApi([doneJob(THIRD_UID)], lesionTimeline()), fakeViewer([THIRD_UID, FOLLOW_UP_UID]));
    const rows = [...container.querySelectorAll('[data-testid="oncoflow-lesion-row"]')];
    expect(rows.map((r) => [r.getAttribute('data-tracking-id'), r.getAttribute('data-status'), r.getAttribute('data-target')])).toEqual([
      ['Lesion 1', 'continued', 'true'],
      ['Lesion 2', 'continued', 'true'],
      ['Lesion 3', 'new', 'false'],
    ]);
    const cell = (row: Element | undefined, id: string) => row?.querySelector(`[data-testid="${id}"]`);
    expect(cell(rows[0], 'oncoflow-lesion-volume')?.getAttribute('data-value')).toBe('15');
    expect(cell(rows[0], 'oncoflow-lesion-volume')?.textContent).toBe('15.00');
    expect(cell(rows[0], 'oncoflow-lesion-product')?.getAttribute('data-value')).toBe('560');
    expect(cell(rows[0], 'oncoflow-lesion-vs-baseline')?.textContent).toBe('+50.0 %');
    expect(cell(rows[1], 'oncoflow-lesion-vs-previous')?.getAttribute('data-value')).toBe('-66.67');
    expect(cell(rows[2], 'oncoflow-lesion-vs-baseline')?.getAttribute('data-kind')).toBe('new');
    expect(cell(rows[2], 'oncoflow-lesion-role')?.textContent).toBe('new · non-target · not measurable: longest diameter 6.6 mm < 10 mm');

    const responseBox = byTestId('oncoflow-response');
    expect(responseBox?.getAttribute('data-category')).toBe('PD');
    expect(responseBox?.getAttribute('data-confirmation')).toBe('preliminary');
    expect(responseBox?.getAttribute('data-criteria')).toBe('RANO 2.0, volumetric');
    expect(byTestId('oncoflow-response-category')?.textContent).toBe('PD · Progressive disease');
    expect([...container.querySelectorAll('[data-testid="oncoflow-response-reason"]')].map((r) => r.textContent)).toEqual([
      'new lesion: Lesion 3',
      'sum of target volumes +14.3% from the nadir',
    ]);
    const sums = [...container.querySelectorAll('[data-testid="oncoflow-timeline-sum-point"]')].map((p) => p.getAttribute('data-value'));
    expect(sums).toEqual(['14', '15.5', '16']);
    expect(byTestId('oncoflow-timeline-legend')?.textContent).toContain('target lesion sum (cm³)');
  });

  it('shows no lesion row and no response for a study analysed before lesion tracking', async () => {
    await renderPanel(fakeApi([doneJob()]), fakeViewer([FOLLOW_UP_UID, BASELINE_UID]));
    expect(container.querySelectorAll('[data-testid="oncoflow-lesion-row"]')).toHaveLength(0);
    expect(byTestId('oncoflow-response')).toBeNull();
    expect(byTestId('oncoflow-response-note')?.textContent).toContain('before lesion tracking');
    expect(byTestId('oncoflow-timeline-sum-line')).toBeNull();
  });
});

// -- issue 18, item 8: where the viewports open, lesion rows, the clinical state ----------------

/** Two visits with two lesions each, at distinct centroids; Lesion 2 is the larger target at the follow-up. */
function twoLesionTimeline(): PatientTimeline {
  return timeline([
    baselineTimePoint({
      lesions: [
        lesion('Lesion 1', 10, 400, { status: 'baseline', centroid_lps_mm: [1, 2, 3] }),
        lesion('Lesion 2', 4, 150, { label: 2, status: 'baseline', centroid_lps_mm: [4, 5, 6] }),
      ],
      response: null,
    }),
    followUpTimePoint({
      lesions: [
        lesion('Lesion 1', 8, 300, { centroid_lps_mm: [11, 12, 13] }),
        lesion('Lesion 2', 9, 320, { label: 2, centroid_lps_mm: [14, 15, 16] }),
        lesion('Lesion 3', 30, 20, { label: 3, status: 'new', target: false, measurable: false, centroid_lps_mm: [17, 18, 19] }),
      ],
      response: response(),
    }),
  ]);
}

function setValue(element: HTMLInputElement | HTMLSelectElement, value: string) {
  const prototype = element instanceof HTMLSelectElement ? HTMLSelectElement.prototype : HTMLInputElement.prototype;
  Object.getOwnPropertyDescriptor(prototype, 'value')?.set?.call(element, value);
  element.dispatchEvent(new Event(element instanceof HTMLSelectElement ? 'change' : 'input', { bubbles: true }));
}

describe('OncoFlow panel: opening on the lesion', () => {
  it('shows each viewport’s ensemble SEG, then opens both on the largest target lesion with a window', async () => {
    const viewer = fakeViewer([FOLLOW_UP_UID, BASELINE_UID]);
    await renderPanel(fakeApi([doneJob()], twoLesionTimeline()), viewer);
    await waitFor(() => byTestId('oncoflow-navigation')?.getAttribute('data-state') === 'done');
    // vp-0 shows the follow-up, vp-1 the baseline: each gets its own visit's SEG (the timeline's seg_sop_instance_uid)
    expect(viewer.segmentations).toEqual([
      ['vp-0', '1.2.826.0.1.3680043.8.498.2002'],
      ['vp-1', '1.2.826.0.1.3680043.8.498.2001'],
    ]);
    expect(viewer.moves).toEqual([
      {
        setWindow: true,
        targets: [
          { viewportId: 'vp-0', studyInstanceUid: FOLLOW_UP_UID, positionMm: [14, 15, 16], source: 'own' },
          { viewportId: 'vp-1', studyInstanceUid: BASELINE_UID, positionMm: [4, 5, 6], source: 'own' },
        ],
      },
    ]);
    const status = byTestId('oncoflow-navigation');
    expect(status?.getAttribute('data-tracking-id')).toBe('Lesion 2');
    expect(status?.textContent).toBe('On Lesion 2 (largest target lesion): 2024-04-15: slice 21/40; 2024-01-15: slice 21/40.');
    expect(container.querySelector('[data-tracking-id="Lesion 2"]')?.getAttribute('data-selected')).toBe('true');
    // once only: later viewer changes and renders do not move the viewports again
    await wait(20);
    expect(viewer.moves).toHaveLength(1);
  });

  it('moves both viewports to a clicked lesion row, a new lesion at the follow-up’s position in both', async () => {
    const viewer = fakeViewer([FOLLOW_UP_UID, BASELINE_UID]);
    await renderPanel(fakeApi([doneJob()], twoLesionTimeline()), viewer);
    await waitFor(() => viewer.moves.length === 1 && byTestId('oncoflow-navigation')?.getAttribute('data-state') === 'done');
    const row = (id: string) => container.querySelector<HTMLElement>(`[data-testid="oncoflow-lesion-row"][data-tracking-id="${id}"]`);
    await act(async () => row('Lesion 1')?.querySelector<HTMLElement>('td:nth-child(2)')?.click());
    await waitFor(() => byTestId('oncoflow-navigation')?.getAttribute('data-tracking-id') === 'Lesion 1');
    expect(viewer.moves[1]).toEqual({
      setWindow: false,
      targets: [
        { viewportId: 'vp-0', studyInstanceUid: FOLLOW_UP_UID, positionMm: [11, 12, 13], source: 'own' },
        { viewportId: 'vp-1', studyInstanceUid: BASELINE_UID, positionMm: [1, 2, 3], source: 'own' },
      ],
    });
    expect(row('Lesion 1')?.getAttribute('data-selected')).toBe('true');
    expect(row('Lesion 2')?.getAttribute('data-selected')).toBe('false');
    // the tracking ID is a button too (keyboard)
    await act(async () => row('Lesion 3')?.querySelector<HTMLButtonElement>('[data-testid="oncoflow-lesion-goto"]')?.click());
    await waitFor(() => viewer.moves.length === 3);
    expect(viewer.moves[2]?.targets).toMatchObject([
      { positionMm: [17, 18, 19], source: 'own' },
      { positionMm: [17, 18, 19], source: 'other' },
    ]);
    await waitFor(() => byTestId('oncoflow-navigation')?.textContent?.includes('lesion not in this visit') === true);
  });

  it('only sets the window when the visit has no lesion rows, and says why the SEG could not be shown', async () => {
    const viewer = fakeViewer([FOLLOW_UP_UID, BASELINE_UID]);
    viewer.showSegmentation = async (viewportId) => ({ viewportId, shown: false, message: 'the viewport did not show the SEG in time' });
    await renderPanel(fakeApi([doneJob()], timeline()), viewer);
    await waitFor(() => byTestId('oncoflow-navigation')?.getAttribute('data-state') === 'failed');
    expect(viewer.moves).toEqual([
      { setWindow: true, targets: [{ viewportId: 'vp-0', positionMm: null }, { viewportId: 'vp-1', positionMm: null }] },
    ]);
    expect(byTestId('oncoflow-navigation')?.textContent).toContain('No lesion to open on');
    expect(byTestId('oncoflow-navigation')?.textContent).toContain('2024-04-15: the viewport did not show the SEG in time');
  });
});

describe('OncoFlow panel: a study OncoFlow does not know', () => {
  it('still gives the viewport a window from its slice, and shows no SEG', async () => {
    const viewer = fakeViewer([FOLLOW_UP_UID]);
    await renderPanel(fakeApi([], null), viewer);
    await waitFor(() => byTestId('oncoflow-navigation')?.getAttribute('data-state') === 'done');
    expect(viewer.segmentations).toEqual([]);
    expect(viewer.moves).toEqual([{ setWindow: true, targets: [{ viewportId: 'vp-0', positionMm: null }] }]);
    expect(byTestId('oncoflow-clinical')).toBeNull(); // no time point to enter a clinical state for
  });
});

describe('OncoFlow panel: clinical state', () => {
  it('loads the visit’s stored state, saves a new one and reloads the timeline and the job', async () => {
    const api = fakeApi([doneJob()], twoLesionTimeline());
    await renderPanel(api, fakeViewer([FOLLOW_UP_UID, BASELINE_UID]));
    await waitFor(() => byTestId('oncoflow-clinical-entered')?.textContent?.startsWith('Nothing entered') === true);
    expect(api.clinicalState).toHaveBeenCalledWith(FOLLOW_UP_UID);
    expect(byTestId('oncoflow-clinical')?.getAttribute('data-study-instance-uid')).toBe(FOLLOW_UP_UID);
    const save = byTestId('oncoflow-clinical-save') as HTMLButtonElement;
    expect(save.disabled).toBe(true); // nothing changed yet
    await act(async () => setValue(byTestId('oncoflow-clinical-status') as HTMLSelectElement, 'worse'));
    await act(async () => setValue(byTestId('oncoflow-clinical-steroid') as HTMLInputElement, '8'));
    expect(save.disabled).toBe(false);
    const timelineCalls = vi.mocked(api.patientTimeline).mock.calls.length;
    const jobCalls = vi.mocked(api.studyJob).mock.calls.length;
    await act(async () => save.click());
    await waitFor(() => byTestId('oncoflow-clinical-message')?.getAttribute('data-kind') === 'saved');
    expect(api.clinicalCalls).toEqual([[FOLLOW_UP_UID, { status: 'worse', steroid_mg_per_day: 8 }]]);
    expect(byTestId('oncoflow-clinical-message')?.textContent).toBe('Saved. Response now: PD (preliminary).');
    expect(byTestId('oncoflow-clinical-entered')?.textContent).toBe('Entered by dr.house on 2025-01-02 10:11.');
    expect(byTestId('oncoflow-clinical-entered')?.getAttribute('data-status')).toBe('worse');
    await waitFor(() => vi.mocked(api.patientTimeline).mock.calls.length > timelineCalls);
    await waitFor(() => vi.mocked(api.studyJob).mock.calls.length > jobCalls);
  });

  it('shows the route’s 4xx error and refuses a dose that is not a number before sending', async () => {
    const api = fakeApi([doneJob()], twoLesionTimeline());
    api.saveClinicalState = vi.fn(async () => {
      throw new OncoFlowApiError(400, 'steroid_mg_per_day must be between 0 and 100 (dexamethasone-equivalent mg/day), not 400', '/x');
    });
    await renderPanel(api, fakeViewer([FOLLOW_UP_UID, BASELINE_UID]));
    await waitFor(() => byTestId('oncoflow-clinical-entered')?.textContent?.startsWith('Nothing entered') === true);
    const steroid = byTestId('oncoflow-clinical-steroid') as HTMLInputElement;
    await act(async () => setValue(steroid, 'four'));
    await act(async () => (byTestId('oncoflow-clinical-save') as HTMLButtonElement).click());
    expect(api.saveClinicalState).not.toHaveBeenCalled();
    expect(byTestId('oncoflow-clinical-message')?.textContent).toContain('steroid dose "four" is not a number');
    await act(async () => setValue(steroid, '400'));
    await act(async () => (byTestId('oncoflow-clinical-save') as HTMLButtonElement).click());
    await waitFor(() => byTestId('oncoflow-clinical-message')?.textContent?.includes('HTTP 400') === true);
    expect(byTestId('oncoflow-clinical-message')?.textContent).toBe(
      'Not saved: steroid_mg_per_day must be between 0 and 100 (dexamethasone-equivalent mg/day), not 400 (HTTP 400)',
    );
    expect(byTestId('oncoflow-clinical-message')?.getAttribute('role')).toBe('alert');
  });

  it('starts from the timeline’s entry when the route cannot be read, and says so', async () => {
    const api = fakeApi([doneJob()], timeline([baselineTimePoint(), followUpTimePoint({ clinical: { status: 'stable', steroid_mg_per_day: 2 } })]));
    api.clinicalState = vi.fn(async () => {
      throw new OncoFlowApiError(404, 'no such route', '/x');
    });
    await renderPanel(api, fakeViewer([FOLLOW_UP_UID, BASELINE_UID]));
    await waitFor(() => byTestId('oncoflow-clinical-message') !== null);
    expect((byTestId('oncoflow-clinical-status') as HTMLSelectElement).value).toBe('stable');
    expect((byTestId('oncoflow-clinical-steroid') as HTMLInputElement).value).toBe('2');
    expect(byTestId('oncoflow-clinical-message')?.textContent).toBe('The stored clinical state cannot be read: no such route (HTTP 404)');
  });
});

describe('OncoFlow panel: the approved segmentation', () => {
  it('says the automatic result is measured, and after an approval reloads the timeline and the job', async () => {
    const job = doneJob(FOLLOW_UP_UID, { refinements: [{ version: 1, sop_instance_uid: '1.2.9.1', volume_cm3: 15.8, created_at: 1 }] });
    const api = fakeApi([job]);
    const approval = {
      sop_instance_uid: '1.2.9.1',
      segment_numbers: [1],
      source: 'refined SEG v1',
      volume_cm3: 15.8,
      approved_by: 'alice',
      approved_role: 'radiologist',
      approved_at: 1_772_360_100,
    };
    api.approveSeg = vi.fn(async () => ({
      approval,
      statement: 'approved by radiologist alice, 2026-03-01 10:15 UTC',
      automatic_seg_sop_instance_uid: null,
      in_force: {},
      timeline: {},
    }));
    await renderPanel(api, fakeViewer([FOLLOW_UP_UID, BASELINE_UID]));
    await waitFor(() => byTestId('oncoflow-approved-seg-candidate') !== null);
    expect(byTestId('oncoflow-approved-seg')?.getAttribute('data-study-instance-uid')).toBe(FOLLOW_UP_UID);
    expect(byTestId('oncoflow-approved-seg-measured')?.textContent).toBe('Automatic (panel ensemble)');
    const timelineCalls = vi.mocked(api.patientTimeline).mock.calls.length;
    const jobCalls = vi.mocked(api.studyJob).mock.calls.length;
    await act(async () => (byTestId('oncoflow-approved-seg-approve') as HTMLButtonElement).click());
    await waitFor(() => byTestId('oncoflow-approved-seg-message')?.getAttribute('data-kind') === 'done');
    expect(api.approveSeg).toHaveBeenCalledWith(FOLLOW_UP_UID, { sop_instance_uid: '1.2.9.1' });
    await waitFor(() => vi.mocked(api.patientTimeline).mock.calls.length > timelineCalls);
    await waitFor(() => vi.mocked(api.studyJob).mock.calls.length > jobCalls);
  });

  it('is not shown for a study OncoFlow has no job for', async () => {
    await renderPanel(fakeApi([], null), fakeViewer([FOLLOW_UP_UID]));
    await wait(20);
    expect(byTestId('oncoflow-approved-seg')).toBeNull();
  });
});
