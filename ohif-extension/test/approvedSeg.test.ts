import { describe, expect, it, vi } from 'vitest';
import {
  approvedSegUrl,
  asApprovedSegAnswer,
  asApproveSegResult,
  asWithdrawSegResult,
  createOncoFlowApi,
  OncoFlowApiError,
  studySegsFromQido,
  studySegsUrl,
  type FetchFunction,
} from '../src/api';
import {
  approvalErrorText,
  approveRefusal,
  approveRequest,
  AUTOMATIC_TEXT,
  describeApproval,
  inForceText,
  isAutomaticSeg,
  measuredText,
  segCandidates,
  segmentOptions,
  timelineNote,
  toggleSegment,
} from '../src/approvedSeg';
import { APPROVAL, APPROVED_AT, BRAIN, ENSEMBLE, EXPERT, jobWithSegs, MISSING, MISSING_BODY, OHIF_SEG, REFINED_1, REFINED_2, SEVERAL, SEVERAL_BODY, seg, STUDY_SEGS } from './approvalFixtures';
import { doneJob, FOLLOW_UP_UID, response } from './fixtures';

function jsonResponse(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json' } });
}

describe('the SEGs a radiologist may approve', () => {
  it('lists the refined versions (newest first) and the SEGs stored by others, never OncoFlow’s automatic ones', () => {
    const candidates = segCandidates(jobWithSegs(), STUDY_SEGS);
    expect(candidates.map((c) => c.sopInstanceUid)).toEqual([REFINED_2, REFINED_1, OHIF_SEG, '2.25.1']);
    expect(candidates.map((c) => c.kind)).toEqual(['refined', 'refined', 'stored', 'stored']);
    expect(candidates[0]?.label).toBe('Refined SEG v2 · 15.80 cm³');
    expect(candidates[2]?.label).toBe('Tumour (edited) · series 300 · OHIF');
    expect(candidates[3]?.label).toBe('SEG');
  });

  it('lists the refined versions even when the study’s SEGs cannot be listed, and a refined SEG the job does not know', () => {
    expect(segCandidates(jobWithSegs(), []).map((c) => c.label)).toEqual(['Refined SEG v2 · 15.80 cm³', 'Refined SEG v1 · 14.20 cm³']);
    const refinedElsewhere = seg('1.2.826.0.1.3680043.8.498.2103', 'OncoFlow SEG refined v3 (sam2)', 'OncoFlow', 9103);
    expect(segCandidates(doneJob(), [refinedElsewhere])).toMatchObject([{ kind: 'refined', label: 'OncoFlow SEG refined v3 (sam2) · series 9103' }]);
    expect(segCandidates(null, [])).toEqual([]);
  });

  it('tells OncoFlow’s automatic SEGs by the job, the description or the manufacturer', () => {
    const automatic = new Set([ENSEMBLE]);
    expect(isAutomaticSeg(seg(ENSEMBLE, 'anything', 'OHIF'), automatic)).toBe(true);
    expect(isAutomaticSeg(seg('9.9', 'OncoFlow SEG nnunet', null), automatic)).toBe(true);
    expect(isAutomaticSeg(seg('9.9', 'brain mask', 'OncoFlow'), automatic)).toBe(true);
    expect(isAutomaticSeg(seg('9.9', 'OncoFlow SEG refined v4 (sam2)', 'OncoFlow'), automatic)).toBe(false);
    expect(isAutomaticSeg(seg('9.9', 'My SEG', 'OHIF'), automatic)).toBe(false);
  });
});

describe('which segmentation is measured', () => {
  it('says Automatic without an approval, else which SEG, its segments and the route’s statement', () => {
    expect(measuredText(null)).toBe(AUTOMATIC_TEXT);
    expect(measuredText(APPROVAL, 'approved by radiologist alice, 2026-03-01 10:15 UTC')).toBe(
      'Approved segmentation: refined SEG v2 (SEG …3.8.498.2102, segment 1), approved by radiologist alice, 2026-03-01 10:15 UTC',
    );
    // no statement in the answer: the same words, made here
    expect(describeApproval(APPROVAL)).toBe('approved by radiologist alice, 2026-03-01 10:15 UTC');
    expect(measuredText({ ...APPROVAL, segment_numbers: [1, 3], approved_role: 'anonymous', approved_by: 'anonymous' })).toBe(
      'Approved segmentation: refined SEG v2 (SEG …3.8.498.2102, segments 1, 3), approved by an anonymous user (login off), 2026-03-01 10:15 UTC',
    );
  });

  it('says how far the automatic result is from the approved one', () => {
    expect(inForceText({ dice_vs_automatic: 0.8512, automatic_volume_cm3: 16.02, volume_cm3: 15.8, automatic_differs: false })).toEqual({
      text: 'The automatic result agrees: Dice 0.85, automatic 16.02 cm³ against the approved 15.80 cm³.',
      differs: false,
    });
    expect(inForceText({ dice_vs_automatic: 0.41, automatic_differs: true })?.text).toBe('The automatic result differs a lot: Dice 0.41; review the approval.');
    expect(inForceText({ error: 'the approved SEG 1.2 is no longer in the PACS' })).toMatchObject({ differs: true });
    expect(inForceText({ statement: 'approved by x' })).toBeNull();
    expect(inForceText(null)).toBeNull();
  });

  it('says what the recomputed timeline gives', () => {
    expect(timelineNote({ response: response({ label: 'PD (preliminary)' }) })).toBe('Response now: PD (preliminary).');
    expect(timelineNote({ error: 'the study has no finished OncoFlow job' })).toBe('The timeline was not recomputed: the study has no finished OncoFlow job.');
    expect(timelineNote({})).toBe('The timeline, SR and report were recomputed.');
    expect(timelineNote(null)).toBe('');
  });
});

describe('a refused approval', () => {
  it('reads the segments a 422 lists in its body, and nothing from a body without them', () => {
    expect(segmentOptions(SEVERAL_BODY)).toEqual([
      { number: 1, label: 'Segment 1', meaning: 'Neoplasm' },
      { number: 2, label: 'Peritumoral edema', meaning: 'Edema' },
    ]);
    expect(segmentOptions(MISSING_BODY).map((o) => [o.number, o.label])).toEqual([
      [1, 'Segment 1'],
      [2, "Dr. O'Neil's core"],
      [4, 'Brain'],
    ]);
    expect(segmentOptions({ error: 'SEG 1.2 references series 3.4, not the study’s input series 5.6' })).toEqual([]);
    expect(segmentOptions({ segments: [{ number: 0 }, { number: 'x' }, null] })).toEqual([]);
    expect(segmentOptions(null)).toEqual([]);
  });

  it('offers the segment choice on a 422 that lists segments, keeping what was chosen', () => {
    const refusal = approveRefusal(new OncoFlowApiError(422, SEVERAL, '/x', SEVERAL_BODY), { sop_instance_uid: OHIF_SEG });
    expect(refusal).toMatchObject({ kind: 'choose-segments', sopInstanceUid: OHIF_SEG, chosen: [], message: SEVERAL });
    expect(refusal.kind === 'choose-segments' ? refusal.options.map((o) => o.number) : []).toEqual([1, 2]);
    const again = approveRefusal(new OncoFlowApiError(422, MISSING, '/x', MISSING_BODY), { sop_instance_uid: OHIF_SEG, segment_numbers: [1, 3] });
    expect(again).toMatchObject({ kind: 'choose-segments', chosen: [1] });
  });

  it('shows other refusals as the route gives them; a 403 says only a radiologist may approve', () => {
    const empty = "segments [1] of SEG 2.25.9 are empty on the input series: nothing to measure";
    expect(approveRefusal(new OncoFlowApiError(422, empty, '/x'), { sop_instance_uid: '2.25.9' })).toEqual({ kind: 'error', text: `${empty} (HTTP 422)` });
    const route403 = new OncoFlowApiError(403, 'only a radiologist may approve a segmentation or withdraw an approval', '/x');
    expect(approvalErrorText(route403)).toBe('only a radiologist may approve a segmentation or withdraw an approval (HTTP 403)');
    // Orthanc's request filter answers 403 with no JSON error
    expect(approvalErrorText(new OncoFlowApiError(403, 'HTTP 403 Forbidden', '/x'))).toBe(
      'only a radiologist may approve a segmentation or withdraw an approval (HTTP 403: HTTP 403 Forbidden)',
    );
    expect(approvalErrorText(new OncoFlowApiError(409, 'the study has no finished OncoFlow job', '/x'))).toBe('the study has no finished OncoFlow job (HTTP 409)');
  });

  it('builds the request with the chosen segments, sorted and once each', () => {
    expect(approveRequest(OHIF_SEG)).toEqual({ sop_instance_uid: OHIF_SEG });
    expect(approveRequest(OHIF_SEG, [3, 1, 3])).toEqual({ sop_instance_uid: OHIF_SEG, segment_numbers: [1, 3] });
    expect(toggleSegment([1], 3)).toEqual([1, 3]);
    expect(toggleSegment([1, 3], 1)).toEqual([3]);
  });
});

describe('the approved-seg route and the SEG search', () => {
  it('reads the GET, POST and DELETE answers', () => {
    const none = asApprovedSegAnswer(
      { study_instance_uid: FOLLOW_UP_UID, approval: null, statement: null, measured_seg_sop_instance_uid: ENSEMBLE, automatic_seg_sop_instance_uid: ENSEMBLE, history: [] },
      '/x',
    );
    expect(none).toMatchObject({ approval: null, measured_seg_sop_instance_uid: ENSEMBLE, history: [] });
    const statement = 'approved by radiologist alice, 2026-03-01 10:15 UTC';
    const some = asApprovedSegAnswer({ approval: APPROVAL, statement, measured_seg_sop_instance_uid: REFINED_2, automatic_seg_sop_instance_uid: ENSEMBLE, history: [APPROVAL] }, '/x');
    expect(some.approval?.segment_numbers).toEqual([1]);
    expect(some.statement).toBe(statement);
    const posted = asApproveSegResult({ approval: APPROVAL, statement, automatic_seg_sop_instance_uid: ENSEMBLE, in_force: { dice_vs_automatic: 0.9 }, timeline: { response: null } }, '/x');
    expect(posted).toMatchObject({ statement, in_force: { dice_vs_automatic: 0.9 }, timeline: { response: null } });
    expect(asWithdrawSegResult({ withdrawn: { ...APPROVAL, withdrawn_by: 'alice', withdrawn_at: APPROVED_AT + 60 }, timeline: {} }, '/x').withdrawn.withdrawn_by).toBe('alice');
    for (const bad of [null, {}, { approval: { sop_instance_uid: 'x' } }, { approval: { ...APPROVAL, segment_numbers: '1' } }, { approval: { ...APPROVAL, approved_at: 'now' } }]) {
      expect(() => asApprovedSegAnswer(bad, '/x'), JSON.stringify(bad)).toThrow(OncoFlowApiError);
    }
  });

  it('GETs, POSTs and DELETEs /oncoflow/studies/{uid}/approved-seg with the body of the spec, and rejects with the route’s error', async () => {
    const fetch = vi.fn<FetchFunction>(async (_url, init) => {
      if (init?.method === 'POST') {
        const body = JSON.parse(String(init.body)) as { segment_numbers?: number[] };
        return body.segment_numbers
          ? jsonResponse(200, { approval: APPROVAL, statement: 's', automatic_seg_sop_instance_uid: ENSEMBLE, in_force: {}, timeline: {} })
          : jsonResponse(422, { error: SEVERAL });
      }
      if (init?.method === 'DELETE') {
        return jsonResponse(404, { error: `no approved segmentation in force for study ${FOLLOW_UP_UID}: the automatic result is measured` });
      }
      return jsonResponse(200, { approval: null, statement: null, measured_seg_sop_instance_uid: null, automatic_seg_sop_instance_uid: null, history: [] });
    });
    const api = createOncoFlowApi({ fetch, headers: () => ({ Authorization: 'Bearer t' }) });
    expect(approvedSegUrl('', '1.2.3')).toBe('/oncoflow/studies/1.2.3/approved-seg');
    expect((await api.approvedSeg(FOLLOW_UP_UID)).approval).toBeNull();
    const refused = await api.approveSeg(FOLLOW_UP_UID, { sop_instance_uid: OHIF_SEG }).catch((e: unknown) => e);
    expect(refused).toMatchObject({ status: 422, message: SEVERAL });
    expect(JSON.parse(String(fetch.mock.calls[1]?.[1]?.body))).toEqual({ sop_instance_uid: OHIF_SEG });
    await api.approveSeg(FOLLOW_UP_UID, { sop_instance_uid: OHIF_SEG, segment_numbers: [1] });
    const [url, init] = fetch.mock.calls[2] ?? [];
    expect(url).toBe(`/oncoflow/studies/${FOLLOW_UP_UID}/approved-seg`);
    expect(JSON.parse(String(init?.body))).toEqual({ sop_instance_uid: OHIF_SEG, segment_numbers: [1] });
    expect((init?.headers as Record<string, string>).Authorization).toBe('Bearer t');
    const withdrawn = await api.withdrawSegApproval(FOLLOW_UP_UID).catch((e: unknown) => e);
    expect(withdrawn).toMatchObject({ status: 404, message: expect.stringContaining('no approved segmentation in force') });
    expect(fetch.mock.calls[3]?.[1]?.method).toBe('DELETE');
  });

  it('lists the study’s SEG instances through the QIDO-RS proxy', async () => {
    expect(studySegsUrl('', FOLLOW_UP_UID)).toBe(
      `/oncoflow/dicom-web/studies/${FOLLOW_UP_UID}/instances?Modality=SEG&includefield=0008103E%2C00080070%2C00200011`,
    );
    const answer = [
      {
        '00080018': { vr: 'UI', Value: [OHIF_SEG] },
        '00080060': { vr: 'CS', Value: ['SEG'] },
        '0020000E': { vr: 'UI', Value: ['2.25.5'] },
        '0008103E': { vr: 'LO', Value: ['Tumour (edited)'] },
        '00080070': { vr: 'LO', Value: ['OHIF'] },
        '00200011': { vr: 'IS', Value: [300] },
      },
      { '00080018': { vr: 'UI', Value: ['1.2.3'] }, '00080060': { vr: 'CS', Value: ['MR'] } }, // not a SEG: left out
      { '00080018': { vr: 'UI', Value: ['1.2.4'] }, '00080016': { vr: 'UI', Value: ['1.2.840.10008.5.1.4.1.1.66.4'] } },
      { '00080060': { vr: 'CS', Value: ['SEG'] } }, // no SOP Instance UID
    ];
    expect(studySegsFromQido(answer)).toEqual([
      { sopInstanceUid: OHIF_SEG, seriesInstanceUid: '2.25.5', seriesDescription: 'Tumour (edited)', seriesNumber: 300, manufacturer: 'OHIF' },
      { sopInstanceUid: '1.2.4', seriesInstanceUid: null, seriesDescription: null, seriesNumber: null, manufacturer: null },
    ]);
    expect(studySegsFromQido(null)).toEqual([]);
    const fetch = vi.fn<FetchFunction>(async () => jsonResponse(200, answer));
    expect(await createOncoFlowApi({ fetch, baseUrl: 'http://pacs:8042/' }).studySegs(FOLLOW_UP_UID)).toHaveLength(2);
    expect(fetch.mock.calls[0]?.[0]).toBe(`http://pacs:8042/oncoflow/dicom-web/studies/${FOLLOW_UP_UID}/instances?Modality=SEG&includefield=0008103E%2C00080070%2C00200011`);
    const empty = vi.fn<FetchFunction>(async () => new Response(null, { status: 204 }));
    expect(await createOncoFlowApi({ fetch: empty }).studySegs(FOLLOW_UP_UID)).toEqual([]);
  });
});
