// @vitest-environment jsdom
import { act } from 'react';
import { createRoot, type Root } from 'react-dom/client';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { OncoFlowApi, PatientTimeline, RefineRequest, RefineResult, StudyJob } from '../src/api';
import { OncoFlowApiError, reportPdfUrl } from '../src/api';
import { OncoFlowPanel } from '../src/components/OncoFlowPanel';
import type { SeriesShown, ViewerBridge, ViewerPoint, ViewportLink } from '../src/viewerBridge';
import { BASELINE_UID, doneJob, FOLLOW_UP_UID, lesionTimeline, PATIENT_ID, runningJob, THIRD_UID, timeline } from './fixtures';

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
}

function fakeApi(jobs: StudyJob[], patientTimeline: PatientTimeline | null = timeline()): FakeApi {
  const api: FakeApi = {
    jobs,
    refineCalls: [],
    reanalyseCalls: [],
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
  };
  return api;
}

interface FakeViewer extends ViewerBridge {
  click(point: ViewerPoint): void;
  links: ViewportLink[];
  shown: Array<[string, string | null, string | null]>;
  capturing: boolean;
}

function fakeViewer(studyUids: string[]): FakeViewer {
  let onPoint: ((point: ViewerPoint) => void) | null = null;
  const viewer: FakeViewer = {
    links: [],
    shown: [],
    capturing: false,
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
