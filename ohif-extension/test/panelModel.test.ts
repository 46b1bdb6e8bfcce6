import { describe, expect, it } from 'vitest';
import type { PatientTimeline, StudyJob } from '../src/api';
import { buildExpertRows, buildLesionTable, buildPanelView, type Loadable, type PanelModelInput } from '../src/panelModel';
import {
  BASELINE_UID,
  baselineTimePoint,
  doneJob,
  failedJob,
  FOLLOW_UP_UID,
  followUpTimePoint,
  lesion,
  lesionTimeline,
  response,
  runningJob,
  THIRD_UID,
  timeline,
} from './fixtures';

function loaded<T>(value: T): Loadable<T> {
  return { status: 'loaded', value };
}

function input(overrides: Partial<PanelModelInput>): PanelModelInput {
  return {
    focusStudyUid: FOLLOW_UP_UID,
    viewerStudyUids: [FOLLOW_UP_UID, BASELINE_UID],
    job: loaded<StudyJob>(doneJob()),
    timeline: loaded<PatientTimeline>(timeline()),
    timeZone: 'UTC',
    ...overrides,
  };
}

describe('panel model: follow-up with a comparison', () => {
  const view = buildPanelView(input({}));

  it('shows the comparison numbers with their raw route values', () => {
    expect(view.volumes).toEqual({
      baseline: { text: '12.35 cm³', raw: '12.345' },
      followUp: { text: '16.02 cm³', raw: '16.02' },
      percentChange: { text: '+29.8 %', raw: '29.77' },
      percentChangeCi: '+24.1 % to +35.4 %',
      baselineOnly: false,
    });
  });

  it('shows the flag and its reason as the route gives them', () => {
    expect(view.flag).toEqual({ raw: 'progression', label: 'progression', reason: 'volume +29.8% > +25%', tone: 'alert' });
  });

  it('names the baseline and its date and lists the details', () => {
    expect(view.comparison?.baselineStudyUid).toBe(BASELINE_UID);
    expect(view.comparison?.baselineDate).toBe('2024-01-15');
    expect(view.comparison?.followUpDate).toBe('2024-04-15');
    const labels = view.comparison?.details.map((d) => [d.label, d.value.text]);
    expect(labels).toContainEqual(['Dice (registered)', '0.731']);
    expect(labels).toContainEqual(['HD95', '4.1 mm']);
    expect(labels).toContainEqual(['Days between', '91 d']);
    expect(labels).toContainEqual(['Registration (elastix) NCC', '0.412 → 0.938']);
  });

  it('links the signed report of the focus time point', () => {
    expect(view.report).toEqual({ sopInstanceUid: '1.2.826.0.1.3680043.8.498.4002', error: null });
  });

  it('has a chart over both time points with the focus and its baseline marked', () => {
    expect(view.chart?.points.map((p) => [p.studyDate, p.isFocus, p.isBaseline])).toEqual([
      ['2024-01-15', false, true],
      ['2024-04-15', true, false],
    ]);
    expect(view.timePoints.map((t) => [t.studyDate, t.flag, t.inViewer])).toEqual([
      ['2024-01-15', 'baseline', true],
      ['2024-04-15', 'progression', true],
    ]);
  });

  it('shows the done job with its events latest first and its timings', () => {
    expect(view.job.state).toBe('done');
    expect(view.job.isActive).toBe(false);
    expect(view.job.events[0]).toEqual({ clock: '09:00:40', message: 'done' });
    expect(view.job.timings).toContainEqual({ stage: 'panel', text: '5.30 s' });
    expect(view.job.tumourVolume).toEqual({ text: '16.02 cm³', raw: '16.02' });
    expect(view.agreement).toEqual({ strategy: 'staple', score: { text: '0.873', raw: '0.8731' }, flag: 'high' });
  });
});

describe('panel model: baseline only', () => {
  const view = buildPanelView(
    input({
      focusStudyUid: BASELINE_UID,
      viewerStudyUids: [BASELINE_UID],
      job: loaded(doneJob(BASELINE_UID, { outputs: { ...doneJob().outputs, longitudinal: { sr_sop_instance_uid: '1.2.3', comparison: null } } })),
      timeline: loaded(timeline([baselineTimePoint()])),
    }),
  );

  it('shows the study’s own volume as the baseline, and no change', () => {
    expect(view.volumes).toEqual({
      baseline: { text: '12.35 cm³', raw: '12.345' },
      followUp: null,
      percentChange: null,
      percentChangeCi: null,
      baselineOnly: true,
    });
    expect(view.comparison).toBeNull();
    expect(view.flag).toMatchObject({ raw: '', label: 'baseline', tone: 'neutral' });
  });

  it('draws one point with its interval', () => {
    expect(view.chart?.points).toHaveLength(1);
    expect(view.chart?.linePath).toBe('');
    expect(view.chart?.bandPath).not.toBe('');
  });
});

describe('panel model: jobs that are not done', () => {
  it('a running job is active, with its events and no results yet', () => {
    const view = buildPanelView(input({ job: loaded(runningJob()), timeline: loaded(timeline([baselineTimePoint()])) }));
    expect(view.job).toMatchObject({ state: 'running', label: 'Running', isActive: true, error: null, tumourVolume: null });
    expect(view.job.events.map((e) => e.message)).toEqual(['running (attempt 1)', 'queued (reanalyse)']);
    expect(view.experts).toEqual([]);
    // the follow-up has no time point yet: no comparison, no flag, no fallback to a running job's outputs
    expect(view.volumes).toBeNull();
    expect(view.flag).toBeNull();
  });

  it('a failed job shows its error and no expert table', () => {
    const view = buildPanelView(input({ job: loaded(failedJob()), timeline: { status: 'missing', message: 'No OncoFlow time point for patient X yet.' } }));
    expect(view.job).toMatchObject({ state: 'failed', label: 'Failed', isActive: false });
    expect(view.job.error).toBe('no usable MR series: every series has fewer than 8 slices');
    expect(view.experts).toEqual([]);
    expect(view.chart).toBeNull();
    expect(view.timelineNote).toBe('No OncoFlow time point for patient X yet.');
  });

  it('no job (404) and an unreachable server read plainly', () => {
    expect(buildPanelView(input({ job: { status: 'missing', message: 'x' } })).job).toMatchObject({ state: 'none', label: 'No OncoFlow job for this study' });
    expect(buildPanelView(input({ job: { status: 'error', message: 'HTTP 502' } })).job).toMatchObject({ state: 'error', error: 'HTTP 502' });
  });

  it('falls back to the job’s own comparison when the timeline lacks the study', () => {
    const view = buildPanelView(input({ timeline: { status: 'missing', message: 'none' } }));
    expect(view.volumes?.percentChange?.raw).toBe('29.77');
    expect(view.report.sopInstanceUid).toBe('1.2.826.0.1.3680043.8.498.4002');
  });
});

describe('panel model: missing intervals and failed time points', () => {
  it('keeps a comparison without a CI and says nothing about it', () => {
    const points = [
      baselineTimePoint({ measurements: { ...baselineTimePoint().measurements!, volume_ci95_cm3: null } }),
      followUpTimePoint({
        measurements: { ...followUpTimePoint().measurements!, volume_ci95_cm3: null, experts_mean_volume_cm3: null },
        comparison: { ...followUpTimePoint().comparison!, percent_change_ci95: null, flag: 'minor change', flag_reason: 'volume +12.0%, between ±5% and the progression/response thresholds', percent_change: 12 },
      }),
    ];
    const view = buildPanelView(input({ timeline: loaded(timeline(points)) }));
    expect(view.volumes?.percentChangeCi).toBeNull();
    expect(view.volumes?.percentChange).toEqual({ text: '+12.0 %', raw: '12' });
    expect(view.flag?.tone).toBe('neutral');
    expect(view.chart?.bandPath).toBe('');
    expect(view.chart?.points.every((p) => p.yUpper === p.y && p.yLower === p.y)).toBe(true);
  });

  it('reports a time point whose comparison failed, and leaves it off the chart', () => {
    const points = [
      baselineTimePoint(),
      followUpTimePoint(),
      { study_instance_uid: THIRD_UID, study_date: '2024-07-01', baseline_study_instance_uid: null, error: 'StudyDate missing', comparison: null },
    ];
    const view = buildPanelView(input({ focusStudyUid: THIRD_UID, viewerStudyUids: [THIRD_UID], timeline: loaded(timeline(points)) }));
    expect(view.flag).toMatchObject({ raw: '', label: 'not compared', reason: 'StudyDate missing', tone: 'review' });
    expect(view.chart?.points).toHaveLength(2);
    expect(view.chart?.omitted).toEqual([THIRD_UID]);
    expect(view.timePoints[2]).toMatchObject({ volume: { text: '—', raw: '' }, flag: 'not compared', isFocus: true });
  });

  it('a null percent change (no tumour at baseline) reads as missing, not zero', () => {
    const points = [baselineTimePoint(), followUpTimePoint({ comparison: { ...followUpTimePoint().comparison!, percent_change: null, percent_change_ci95: null } })];
    const view = buildPanelView(input({ timeline: loaded(timeline(points)) }));
    expect(view.volumes?.percentChange).toEqual({ text: '—', raw: '' });
  });

  it('shows why there is no report', () => {
    const points = [baselineTimePoint(), followUpTimePoint({ report_sop_instance_uid: null, report_error: 'report not made: no signing key' })];
    const job = doneJob();
    job.outputs.longitudinal = { ...job.outputs.longitudinal, report: { error: 'report not made: no signing key' } };
    const view = buildPanelView(input({ job: loaded(job), timeline: loaded(timeline(points)) }));
    expect(view.report).toEqual({ sopInstanceUid: null, error: 'report not made: no signing key' });
  });
});

describe('expert rows', () => {
  it('lists experts that ran in panel order, then the skipped ones with their reason', () => {
    const rows = buildExpertRows(doneJob());
    expect(rows.map((r) => [r.name, r.statusText])).toEqual([
      ['nnunet_demo', 'ran'],
      ['threshold', 'ran'],
      ['sam2', 'skipped: not ready: checkpoint missing'],
    ]);
    expect(rows[0]).toMatchObject({ volume: { text: '16.40 cm³', raw: '16.4' }, diceVsEnsemble: { text: '0.941', raw: '0.9412' }, runtime: '1.60 s' });
    expect(rows[2]).toMatchObject({ ran: false, volume: { text: '—', raw: '' }, diceVsEnsemble: { text: '—', raw: '' } });
  });

  it('adds experts named only in panel.skipped', () => {
    const job = doneJob();
    job.outputs.panel = { ran: ['nnunet_demo'], skipped: { medgemma: 'not ready: weights missing' } };
    job.outputs.experts = { nnunet_demo: job.outputs.experts!.nnunet_demo! };
    expect(buildExpertRows(job).map((r) => [r.name, r.status, r.statusText])).toEqual([
      ['nnunet_demo', 'ran', 'ran'],
      ['medgemma', 'skipped', 'skipped: not ready: weights missing'],
    ]);
  });
});

describe('panel model: lesions and response (three visits, two lesions, then a new one)', () => {
  const third = buildPanelView(input({ focusStudyUid: THIRD_UID, viewerStudyUids: [THIRD_UID, BASELINE_UID], timeline: loaded(lesionTimeline()) }));

  it('lists the lesions by tracking identifier with their volume and product now', () => {
    expect(third.lesions?.measure).toBe('volume'); // the response is volumetric
    expect(third.lesions?.baselineDate).toBe('2024-01-15');
    expect(third.lesions?.previousDate).toBe('2024-04-15');
    expect(third.lesions?.note).toBeNull();
    expect(third.lesions?.rows.map((r) => [r.trackingId, r.status, r.roleText, r.measurableText, r.volume.raw, r.product.raw])).toEqual([
      ['Lesion 1', 'continued', 'target', 'measurable', '15', '560'],
      ['Lesion 2', 'continued', 'target', 'measurable', '1', '50'],
      ['Lesion 3', 'new', 'non-target', 'not measurable: longest diameter 6.6 mm < 10 mm', '0.8', '30'],
    ]);
    expect(third.lesions?.rows[0]?.volume.text).toBe('15.00'); // units in the table's header
    expect(third.lesions?.rows[0]?.product.text).toBe('560.0');
  });

  it('computes each lesion’s change against the first visit and the one before, by identifier', () => {
    const changes = third.lesions?.rows.map((r) => [r.trackingId, r.vsBaseline, r.vsPrevious]);
    expect(changes).toEqual([
      ['Lesion 1', { kind: 'change', text: '+50.0 %', raw: '50' }, { kind: 'change', text: '+20.0 %', raw: '20' }], // grows
      ['Lesion 2', { kind: 'change', text: '−75.0 %', raw: '-75' }, { kind: 'change', text: '−66.7 %', raw: '-66.67' }], // shrinks
      ['Lesion 3', { kind: 'new', text: 'new', raw: '' }, { kind: 'new', text: 'new', raw: '' }],
    ]);
  });

  it('shows the response: category, confirmation, criteria, sums and reasons', () => {
    expect(third.response).toMatchObject({
      category: 'PD',
      categoryName: 'Progressive disease',
      confirmation: 'preliminary',
      label: 'PD (preliminary)',
      criteria: 'RANO 2.0, volumetric',
      tone: 'alert',
      targets: 'Lesion 1, Lesion 2',
      unit: 'cm³',
      targetSum: { text: '16.00 cm³', raw: '16' },
      baselineSum: { text: '14.00 cm³', raw: '14' },
      changeFromBaseline: { text: '+14.3 %', raw: '14.29' },
      reasons: ['new lesion: Lesion 3', 'sum of target volumes +14.3% from the nadir'],
    });
    expect(third.responseNote).toBeNull();
  });

  it('charts the target sum per visit beside the volume, the first visit at the baseline sum', () => {
    const sum = third.chart?.targetSum;
    expect(sum?.unit).toBe('cm3');
    expect(sum?.ownAxis).toBe(false); // cm³: the volume axis
    expect(sum?.points.map((p) => [p.studyDate, p.value])).toEqual([
      ['2024-01-15', 14],
      ['2024-04-15', 15.5],
      ['2024-07-15', 16],
    ]);
    expect(sum?.points.map((p) => p.x)).toEqual(third.chart?.points.map((p) => p.x));
    expect(sum?.linePath).toMatch(/^M[\d.]+,[\d.]+ L[\d.]+,[\d.]+ L[\d.]+,[\d.]+$/);
  });

  it('the second visit compares with the first for both columns', () => {
    const second = buildPanelView(input({ timeline: loaded(lesionTimeline()) }));
    expect(second.lesions?.rows.map((r) => [r.trackingId, r.vsBaseline.text, r.vsPrevious.text])).toEqual([
      ['Lesion 1', '+25.0 %', '+25.0 %'],
      ['Lesion 2', '−25.0 %', '−25.0 %'],
    ]);
    expect(second.response).toMatchObject({ category: 'SD', tone: 'good', confirmation: 'not needed' });
  });

  it('the first visit has its lesions, no change and no response yet', () => {
    const first = buildPanelView(input({ focusStudyUid: BASELINE_UID, viewerStudyUids: [BASELINE_UID], timeline: loaded(lesionTimeline()) }));
    expect(first.lesions?.rows.map((r) => [r.trackingId, r.status, r.roleText, r.vsBaseline.kind, r.vsPrevious.kind])).toEqual([
      ['Lesion 1', 'baseline', 'target', 'none', 'none'], // the first visit's targets are chosen there
      ['Lesion 2', 'baseline', 'target', 'none', 'none'],
    ]);
    expect(first.response).toBeNull();
    expect(first.responseNote).toMatch(/^First visit/);
  });

  it('lists a baseline lesion absent now as gone', () => {
    const points = lesionTimeline().time_points;
    const last = points[2]!;
    points[2] = { ...last, lesions: last.lesions!.filter((l) => l.tracking_id !== 'Lesion 2') };
    const view = buildPanelView(input({ focusStudyUid: THIRD_UID, timeline: loaded(timeline(points)) }));
    const gone = view.lesions?.rows.find((r) => r.trackingId === 'Lesion 2');
    expect(view.lesions?.rows.map((r) => r.trackingId)).toEqual(['Lesion 1', 'Lesion 3', 'Lesion 2']); // present first
    expect(gone).toMatchObject({
      present: false,
      status: 'gone',
      target: null,
      volume: { text: '—', raw: '' },
      vsBaseline: { kind: 'gone', text: 'gone' },
      vsPrevious: { kind: 'gone', text: 'gone' },
    });
  });

  it('sums the lesions merged into one, and names the lesion a part split from', () => {
    const points = lesionTimeline().time_points;
    const last = points[2]!;
    points[2] = {
      ...last,
      lesions: [
        lesion('Lesion 1', 15, 560, { status: 'merged', merged_ids: ['Lesion 2'] }),
        lesion('Lesion 4', 2, 80, { status: 'split', split_from: 'Lesion 1', target: false }),
      ],
    };
    const view = buildPanelView(input({ focusStudyUid: THIRD_UID, timeline: loaded(timeline(points)) }));
    expect(view.lesions?.rows.map((r) => [r.trackingId, r.statusText, r.vsBaseline.raw, r.vsPrevious.raw, r.vsBaseline.text])).toEqual([
      ['Lesion 1', 'merged with Lesion 2', '7.14', '-3.23', '+7.1 %'], // 15 vs 10 + 4 cm³, 15 vs 12.5 + 3 cm³
      ['Lesion 4', 'split from Lesion 1', '', '', 'split from Lesion 1'],
    ]);
    expect(view.lesions?.rows.some((r) => r.trackingId === 'Lesion 2')).toBe(false); // merged, not gone
  });

  it('measures the changes in the criteria’s measure (bidimensional: products)', () => {
    const points = lesionTimeline().time_points.map((t) =>
      t.response ? { ...t, response: { ...t.response, criteria: 'RANO 2.0, bidimensional', unit: 'mm2', target_sum: 610, baseline_sum: 550 } } : t,
    );
    const view = buildPanelView(input({ focusStudyUid: THIRD_UID, timeline: loaded(timeline(points)) }));
    expect(view.lesions?.measure).toBe('product');
    expect(view.lesions?.rows[0]?.vsBaseline.raw).toBe('40'); // 560 vs 400 mm²
    expect(view.response?.targetSum).toEqual({ text: '610.0 mm²', raw: '610' });
    expect(view.chart?.targetSum).toMatchObject({ unit: 'mm2', ownAxis: true });
    expect(view.chart?.targetSum?.points.map((p) => p.value)).toEqual([550, 610, 610]);
  });

  it('falls back to the job’s lesions and response when the timeline lacks the study', () => {
    const job = doneJob();
    job.outputs.longitudinal = { ...job.outputs.longitudinal, lesions: [lesion('Lesion 1', 16.02, 500)], response: response() };
    const view = buildPanelView(input({ job: loaded(job), timeline: { status: 'missing', message: 'none' } }));
    expect(view.lesions?.rows.map((r) => [r.trackingId, r.volume.raw, r.vsBaseline.kind])).toEqual([['Lesion 1', '16.02', 'none']]);
    expect(view.response?.category).toBe('SD');
  });
});

describe('panel model: time points stored before lesion tracking', () => {
  it('an old-format focus has no lesion rows and says why; no response, no sum line', () => {
    const view = buildPanelView(input({})); // the fixtures' time points have neither key
    expect(view.lesions?.rows).toEqual([]);
    expect(view.lesions?.note).toMatch(/analysed before lesion tracking/);
    expect(view.response).toBeNull();
    expect(view.responseNote).toMatch(/before lesion tracking/);
    expect(view.chart?.targetSum).toBeNull();
    expect(view.chart?.points).toHaveLength(2); // the volume line as before
  });

  it('an old-format earlier visit leaves the changes against it unknown', () => {
    const points = [
      baselineTimePoint(), // no lesions, no response
      followUpTimePoint({ lesions: [lesion('Lesion 1', 16.02, 500)], response: null }),
    ];
    const view = buildPanelView(input({ timeline: loaded(timeline(points)) }));
    expect(view.lesions?.rows.map((r) => [r.trackingId, r.vsBaseline, r.vsPrevious])).toEqual([
      ['Lesion 1', { kind: 'none', text: '—', raw: '' }, { kind: 'none', text: '—', raw: '' }],
    ]);
    expect(view.chart?.targetSum).toBeNull();
  });

  it('a failed focus time point has no lesion table', () => {
    const points = [baselineTimePoint(), { study_instance_uid: THIRD_UID, study_date: '2024-07-01', baseline_study_instance_uid: null, error: 'StudyDate missing' }];
    const view = buildPanelView(input({ focusStudyUid: THIRD_UID, timeline: loaded(timeline(points)) }));
    expect(view.lesions).toBeNull();
    expect(view.responseNote).toBeNull();
  });

  it('a focus with no lesion at all says so', () => {
    expect(buildLesionTable(FOLLOW_UP_UID, [], timeline(), null)).toMatchObject({ rows: [], note: 'No lesion found in this study.', measure: 'volume' });
  });
});
