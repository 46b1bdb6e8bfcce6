// @vitest-environment jsdom
import { act } from 'react';
import { createRoot, type Root } from 'react-dom/client';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { OncoFlowApiError, type ApprovedSegAnswer, type ApproveSegRequest, type OncoFlowApi, type StudyJob } from '../src/api';
import { ApprovedSegControl } from '../src/components/ApprovedSegControl';
import { APPROVAL, ENSEMBLE, jobWithSegs, OHIF_SEG, REFINED_1, REFINED_2, SEVERAL, SEVERAL_BODY, STUDY_SEGS } from './approvalFixtures';
import { FOLLOW_UP_UID, response } from './fixtures';

(globalThis as { IS_REACT_ACT_ENVIRONMENT?: boolean }).IS_REACT_ACT_ENVIRONMENT = true;

const wait = (ms: number) => act(() => new Promise<void>((resolve) => setTimeout(resolve, ms)));

async function waitFor(condition: () => boolean, timeoutMs = 2000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) {
      throw new Error('condition not met in time');
    }
    await wait(5);
  }
}

const STATEMENT = 'approved by radiologist alice, 2026-03-01 10:15 UTC';

type ApprovalApi = Pick<OncoFlowApi, 'approvedSeg' | 'approveSeg' | 'withdrawSegApproval' | 'studySegs'> & {
  current: ApprovedSegAnswer;
  posts: ApproveSegRequest[];
};

function automatic(): ApprovedSegAnswer {
  return { study_instance_uid: FOLLOW_UP_UID, approval: null, statement: null, measured_seg_sop_instance_uid: ENSEMBLE, automatic_seg_sop_instance_uid: ENSEMBLE, history: [] };
}

/** A route that wants segment numbers for the OHIF SEG (it has two segments) and approves the rest. */
function fakeApi(): ApprovalApi {
  const api: ApprovalApi = {
    current: automatic(),
    posts: [],
    approvedSeg: vi.fn(async () => api.current),
    studySegs: vi.fn(async () => STUDY_SEGS),
    approveSeg: vi.fn(async (_uid: string, request: ApproveSegRequest) => {
      api.posts.push(request);
      if (request.sop_instance_uid === OHIF_SEG && !request.segment_numbers) {
        throw new OncoFlowApiError(422, SEVERAL, '/x', SEVERAL_BODY);
      }
      const approval = {
        ...APPROVAL,
        sop_instance_uid: request.sop_instance_uid,
        segment_numbers: request.segment_numbers ?? [1],
        source: request.sop_instance_uid === OHIF_SEG ? "SEG stored by OHIF ('Tumour (edited)')" : 'refined SEG v2',
      };
      api.current = { ...api.current, approval, statement: STATEMENT, measured_seg_sop_instance_uid: approval.sop_instance_uid, history: [approval] };
      return {
        approval,
        statement: STATEMENT,
        automatic_seg_sop_instance_uid: ENSEMBLE,
        in_force: { dice_vs_automatic: 0.41, automatic_volume_cm3: 16.02, volume_cm3: 9.5, automatic_differs: true },
        timeline: { response: response({ label: 'PR (preliminary)' }) },
      };
    }),
    withdrawSegApproval: vi.fn(async () => {
      const withdrawn = { ...(api.current.approval ?? APPROVAL), withdrawn_by: 'alice', withdrawn_at: APPROVAL.approved_at + 60 };
      api.current = { ...automatic(), history: [withdrawn] };
      return { withdrawn, timeline: {} };
    }),
  };
  return api;
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
const click = (id: string) => act(async () => (byTestId(id) as HTMLButtonElement).click());

async function render(api: ApprovalApi, job: StudyJob = jobWithSegs(), onChanged = vi.fn()) {
  await act(async () => {
    root.render(<ApprovedSegControl api={api} studyInstanceUid={FOLLOW_UP_UID} job={job} onChanged={onChanged} />);
  });
  await wait(5);
  return onChanged;
}

function select(value: string): void {
  const element = byTestId('oncoflow-approved-seg-candidate') as HTMLSelectElement;
  const setter = Object.getOwnPropertyDescriptor(HTMLSelectElement.prototype, 'value')?.set;
  setter?.call(element, value);
  element.dispatchEvent(new Event('change', { bubbles: true }));
}

describe('the approved-segmentation control', () => {
  it('says the automatic result is measured and offers the refined and stored SEGs, not the automatic ones', async () => {
    const api = fakeApi();
    await render(api);
    await waitFor(() => byTestId('oncoflow-approved-seg-candidate') !== null);
    const measured = byTestId('oncoflow-approved-seg-measured');
    expect(measured?.textContent).toBe('Automatic (panel ensemble)');
    expect(measured?.getAttribute('data-kind')).toBe('automatic');
    expect(measured?.getAttribute('data-sop-instance-uid')).toBe(ENSEMBLE);
    const options = [...container.querySelectorAll('[data-testid="oncoflow-approved-seg-candidate"] option')];
    expect(options.map((o) => o.getAttribute('value'))).toEqual([REFINED_2, REFINED_1, OHIF_SEG, '2.25.1']);
    expect(options[0]?.textContent).toBe('Refined SEG v2 · 15.80 cm³');
    expect(byTestId('oncoflow-approved-seg-withdraw')).toBeNull(); // nothing to withdraw
    expect(byTestId('oncoflow-approved-seg')?.getAttribute('data-segs-found')).toBe(String(STUDY_SEGS.length));
    expect(api.approvedSeg).toHaveBeenCalledWith(FOLLOW_UP_UID);
    expect(api.studySegs).toHaveBeenCalledWith(FOLLOW_UP_UID);
  });

  it('asks for the tumour’s segments when the route lists them (422), resends with them, then shows the approval', async () => {
    const api = fakeApi();
    const onChanged = await render(api);
    await waitFor(() => byTestId('oncoflow-approved-seg-candidate') !== null);
    await act(async () => select(OHIF_SEG));
    await click('oncoflow-approved-seg-approve');
    await waitFor(() => byTestId('oncoflow-approved-seg-segments') !== null);
    expect(api.posts).toEqual([{ sop_instance_uid: OHIF_SEG }]);
    expect(byTestId('oncoflow-approved-seg-message')?.textContent).toBe(`Choose the tumour's segments: ${SEVERAL}`);
    const boxes = [...container.querySelectorAll<HTMLInputElement>('[data-testid="oncoflow-approved-seg-segment"]')];
    expect(boxes.map((b) => b.parentElement?.textContent)).toEqual(["1 'Segment 1' (Neoplasm)", "2 'Peritumoral edema' (Edema)"]);
    const approveSegments = byTestId('oncoflow-approved-seg-approve-segments') as HTMLButtonElement;
    expect(approveSegments.disabled).toBe(true); // none chosen yet
    expect(onChanged).not.toHaveBeenCalled();
    await act(async () => boxes[0]?.click());
    expect(approveSegments.disabled).toBe(false);
    await click('oncoflow-approved-seg-approve-segments');
    await waitFor(() => byTestId('oncoflow-approved-seg-message')?.getAttribute('data-kind') === 'done');
    expect(api.posts[1]).toEqual({ sop_instance_uid: OHIF_SEG, segment_numbers: [1] });
    expect(byTestId('oncoflow-approved-seg-segments')).toBeNull();
    const measured = byTestId('oncoflow-approved-seg-measured');
    expect(measured?.getAttribute('data-kind')).toBe('approved');
    expect(measured?.getAttribute('data-sop-instance-uid')).toBe(OHIF_SEG);
    expect(measured?.textContent).toBe(`Approved segmentation: SEG stored by OHIF ('Tumour (edited)') (SEG …554433221100, segment 1), ${STATEMENT}`);
    expect(byTestId('oncoflow-approved-seg-message')?.textContent).toBe('Approved: the timeline now measures this SEG. Response now: PR (preliminary).');
    expect(byTestId('oncoflow-approved-seg-comparison')?.textContent).toBe(
      'The automatic result differs a lot: Dice 0.41, automatic 16.02 cm³ against the approved 9.50 cm³; review the approval.',
    );
    expect(onChanged).toHaveBeenCalledTimes(1); // the panel reloads the timeline and the job
    await waitFor(() => vi.mocked(api.approvedSeg).mock.calls.length >= 2); // and the control reads the route again
  });

  it('shows the route’s 403: only a radiologist may approve', async () => {
    const api = fakeApi();
    api.approveSeg = vi.fn(async () => {
      throw new OncoFlowApiError(403, 'only a radiologist may approve a segmentation or withdraw an approval', '/x');
    });
    const onChanged = await render(api);
    await waitFor(() => byTestId('oncoflow-approved-seg-candidate') !== null);
    await click('oncoflow-approved-seg-approve');
    await waitFor(() => byTestId('oncoflow-approved-seg-message') !== null);
    expect(api.approveSeg).toHaveBeenCalledWith(FOLLOW_UP_UID, { sop_instance_uid: REFINED_2 });
    const message = byTestId('oncoflow-approved-seg-message');
    expect(message?.textContent).toBe('Not approved: only a radiologist may approve a segmentation or withdraw an approval (HTTP 403)');
    expect(message?.getAttribute('role')).toBe('alert');
    expect(byTestId('oncoflow-approved-seg-measured')?.textContent).toBe('Automatic (panel ensemble)');
    expect(onChanged).not.toHaveBeenCalled();
  });

  it('withdraws an approval only after the panel’s own confirmation', async () => {
    const api = fakeApi();
    api.current = { ...automatic(), approval: APPROVAL, statement: STATEMENT, measured_seg_sop_instance_uid: REFINED_2, history: [APPROVAL] };
    const confirm = vi.spyOn(window, 'confirm');
    const onChanged = await render(api);
    await waitFor(() => byTestId('oncoflow-approved-seg-measured')?.getAttribute('data-kind') === 'approved');
    expect(byTestId('oncoflow-approved-seg-measured')?.textContent).toBe(`Approved segmentation: refined SEG v2 (SEG …3.8.498.2102, segment 1), ${STATEMENT}`);
    expect(byTestId('oncoflow-approved-seg-history')?.textContent).toContain(`refined SEG v2: ${STATEMENT}; in force`);
    await click('oncoflow-approved-seg-withdraw');
    expect(byTestId('oncoflow-approved-seg-confirm')?.textContent).toContain('Withdraw the approval?');
    await click('oncoflow-approved-seg-withdraw-cancel');
    expect(byTestId('oncoflow-approved-seg-confirm')).toBeNull();
    expect(api.withdrawSegApproval).not.toHaveBeenCalled();
    await click('oncoflow-approved-seg-withdraw');
    await click('oncoflow-approved-seg-withdraw-confirm');
    await waitFor(() => byTestId('oncoflow-approved-seg-message')?.getAttribute('data-kind') === 'done');
    expect(api.withdrawSegApproval).toHaveBeenCalledWith(FOLLOW_UP_UID);
    expect(confirm).not.toHaveBeenCalled();
    expect(byTestId('oncoflow-approved-seg-measured')?.textContent).toBe('Automatic (panel ensemble)');
    expect(byTestId('oncoflow-approved-seg-withdraw')).toBeNull();
    expect(byTestId('oncoflow-approved-seg-message')?.textContent).toBe(
      'Approval withdrawn: the automatic result is measured again. The timeline, SR and report were recomputed.',
    );
    expect(onChanged).toHaveBeenCalledTimes(1);
    await waitFor(() => byTestId('oncoflow-approved-seg-history')?.textContent?.includes('withdrawn by alice') === true);
    confirm.mockRestore();
  });

  it('starts from the job’s approval until the route answers, and says when the SEGs cannot be listed', async () => {
    const api = fakeApi();
    api.approvedSeg = vi.fn(() => new Promise<ApprovedSegAnswer>(() => undefined)); // never answers
    api.studySegs = vi.fn(async () => {
      throw new OncoFlowApiError(502, 'GET /dicom-web/studies/x/instances: down', '/x');
    });
    await render(api, jobWithSegs());
    await waitFor(() => byTestId('oncoflow-approved-seg-list-error') !== null);
    expect(byTestId('oncoflow-approved-seg-measured')?.textContent).toBe('Loading which segmentation is measured…');
    // the refined versions are still offered
    expect([...container.querySelectorAll('[data-testid="oncoflow-approved-seg-candidate"] option')].map((o) => o.getAttribute('value'))).toEqual([REFINED_2, REFINED_1]);
    const job = { ...jobWithSegs(), approved_segmentation: { ...APPROVAL, statement: STATEMENT } };
    await render(api, job);
    expect(byTestId('oncoflow-approved-seg-measured')?.getAttribute('data-kind')).toBe('approved');
    expect(byTestId('oncoflow-approved-seg-measured')?.textContent).toContain(STATEMENT);
  });
});
