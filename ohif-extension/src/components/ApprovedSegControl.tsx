import { useCallback, useEffect, useMemo, useState } from 'react';
import type { ApprovalInForce, ApprovedSegAnswer, OncoFlowApi, StudyJob, StudySeg } from '../api';
import {
  approvalErrorText,
  approvalTime,
  approveRefusal,
  approveRequest,
  describeApproval,
  inForceText,
  measuredText,
  segCandidates,
  segmentOptionText,
  timelineNote,
  toggleSegment,
  type SegmentOption,
} from '../approvedSeg';

export interface ApprovedSegControlProps {
  api: Pick<OncoFlowApi, 'approvedSeg' | 'approveSeg' | 'withdrawSegApproval' | 'studySegs'>;
  studyInstanceUid: string;
  /** The study's job: its refined SEG versions, its automatic SEGs, and the approval it reports until the route answers. */
  job: StudyJob | null;
  /** After an approval or a withdrawal: the panel reloads the timeline and the job (their measurements come from the approved SEG). */
  onChanged: () => void;
}

type Message = { kind: 'done' | 'error' | 'info'; text: string } | null;
type SegmentChoice = { sopInstanceUid: string; options: SegmentOption[]; chosen: number[] } | null;

/**
 * Which segmentation of the study is measured (the automatic panel ensemble, or the SEG a radiologist
 * approved), approving a refined SEG or one stored from OHIF's segmentation tools (`POST …/approved-seg`,
 * with a choice of segments when the route cannot tell the tumour's), and withdrawing the approval
 * (`DELETE`, after a confirmation in the panel). Route errors are shown as they come.
 */
export function ApprovedSegControl({ api, studyInstanceUid, job, onChanged }: ApprovedSegControlProps) {
  const [answer, setAnswer] = useState<ApprovedSegAnswer | null>(null);
  const [loading, setLoading] = useState(true);
  const [answerGeneration, setAnswerGeneration] = useState(0);
  const [segs, setSegs] = useState<StudySeg[] | null>(null);
  const [segsError, setSegsError] = useState<string | null>(null);
  const [segsGeneration, setSegsGeneration] = useState(0);
  const [selected, setSelected] = useState('');
  const [choice, setChoice] = useState<SegmentChoice>(null);
  const [confirming, setConfirming] = useState(false);
  const [busy, setBusy] = useState<'approve' | 'withdraw' | null>(null);
  const [message, setMessage] = useState<Message>(null);
  const [inForce, setInForce] = useState<ApprovalInForce | null>(null);

  // another study: start again
  useEffect(() => {
    setAnswer(null);
    setSegs(null);
    setSelected('');
    setChoice(null);
    setConfirming(false);
    setMessage(null);
    setInForce(null);
  }, [studyInstanceUid]);

  useEffect(() => {
    let cancelled = false;
    setLoading(true);
    api
      .approvedSeg(studyInstanceUid)
      .then((value) => {
        if (!cancelled) {
          setAnswer(value);
          setLoading(false);
        }
      })
      .catch((error: unknown) => {
        if (!cancelled) {
          setLoading(false);
          setMessage({ kind: 'error', text: `The approved segmentation cannot be read: ${approvalErrorText(error)}` });
        }
      });
    return () => {
      cancelled = true;
    };
  }, [api, studyInstanceUid, answerGeneration]);

  // the study's SEGs: again when a refinement adds one, or when asked
  const refinementsKey = (job?.refinements ?? []).map((r) => r.sop_instance_uid).join(',');
  useEffect(() => {
    let cancelled = false;
    api
      .studySegs(studyInstanceUid)
      .then((value) => {
        if (!cancelled) {
          setSegs(value);
          setSegsError(null);
        }
      })
      .catch((error: unknown) => {
        if (!cancelled) {
          setSegsError(`The study's SEGs cannot be listed: ${approvalErrorText(error)}`);
        }
      });
    return () => {
      cancelled = true;
    };
  }, [api, studyInstanceUid, segsGeneration, refinementsKey]);

  const candidates = useMemo(() => segCandidates(job, segs ?? []), [job, segs]);
  const chosenUid = candidates.some((c) => c.sopInstanceUid === selected) ? selected : (candidates[0]?.sopInstanceUid ?? '');

  // the route's answer, else what the study's job says, until it answers
  const approval = answer ? answer.approval : (job?.approved_segmentation ?? null);
  const statement = answer ? answer.statement : (job?.approved_segmentation?.statement ?? null);
  const measuredUid = answer?.measured_seg_sop_instance_uid ?? approval?.sop_instance_uid ?? job?.outputs.ensemble_seg_sop_instance_uid ?? '';
  const fromJob = job?.outputs.longitudinal?.approved_segmentation ?? null;
  const comparison = approval
    ? inForceText(inForce ?? (fromJob && (!fromJob.sop_instance_uid || fromJob.sop_instance_uid === approval.sop_instance_uid) ? fromJob : null))
    : null;

  const send = useCallback(
    (sopInstanceUid: string, segmentNumbers: readonly number[] = []) => {
      if (!sopInstanceUid) {
        return;
      }
      const request = approveRequest(sopInstanceUid, segmentNumbers);
      setBusy('approve');
      setMessage(null);
      setConfirming(false);
      api
        .approveSeg(studyInstanceUid, request)
        .then((result) => {
          setChoice(null);
          setInForce(result.in_force);
          setAnswer((previous) => ({
            study_instance_uid: studyInstanceUid,
            approval: result.approval,
            statement: result.statement || null,
            measured_seg_sop_instance_uid: result.approval.sop_instance_uid,
            automatic_seg_sop_instance_uid: result.automatic_seg_sop_instance_uid,
            history: [...(previous?.history ?? []), result.approval],
          }));
          setMessage({ kind: 'done', text: `Approved: the timeline now measures this SEG. ${timelineNote(result.timeline)}`.trim() });
          setAnswerGeneration((g) => g + 1);
          onChanged();
        })
        .catch((error: unknown) => {
          const refusal = approveRefusal(error, request);
          if (refusal.kind === 'choose-segments') {
            setChoice({ sopInstanceUid: refusal.sopInstanceUid, options: refusal.options, chosen: refusal.chosen });
            setMessage({ kind: 'info', text: `Choose the tumour's segments: ${refusal.message}` });
          } else {
            setMessage({ kind: 'error', text: `Not approved: ${refusal.text}` });
          }
        })
        .finally(() => setBusy(null));
    },
    [api, onChanged, studyInstanceUid],
  );

  const onWithdraw = useCallback(() => {
    setBusy('withdraw');
    setMessage(null);
    api
      .withdrawSegApproval(studyInstanceUid)
      .then((result) => {
        setInForce(null);
        setAnswer((previous) => ({
          study_instance_uid: studyInstanceUid,
          approval: null,
          statement: null,
          measured_seg_sop_instance_uid: previous?.automatic_seg_sop_instance_uid ?? null,
          automatic_seg_sop_instance_uid: previous?.automatic_seg_sop_instance_uid ?? null,
          history: previous?.history ?? [],
        }));
        setMessage({ kind: 'done', text: `Approval withdrawn: the automatic result is measured again. ${timelineNote(result.timeline)}`.trim() });
        setAnswerGeneration((g) => g + 1);
        onChanged();
      })
      .catch((error: unknown) => setMessage({ kind: 'error', text: `Not withdrawn: ${approvalErrorText(error)}` }))
      .finally(() => {
        setBusy(null);
        setConfirming(false);
      });
  }, [api, onChanged, studyInstanceUid]);

  const history = answer?.history ?? [];
  return (
    <section data-testid="oncoflow-approved-seg" data-study-instance-uid={studyInstanceUid} data-segs-found={segs === null ? '' : String(segs.length)}>
      <h3>Segmentation measured</h3>
      <div
        className={approval ? 'of-big' : undefined}
        data-testid="oncoflow-approved-seg-measured"
        data-kind={approval ? 'approved' : 'automatic'}
        data-sop-instance-uid={measuredUid}
        title={approval ? approval.sop_instance_uid : undefined}
      >
        {answer || approval || !loading ? measuredText(approval, statement) : 'Loading which segmentation is measured…'}
      </div>
      {comparison ? (
        <div className={comparison.differs ? 'of-flag-review' : 'of-muted'} data-testid="oncoflow-approved-seg-comparison" data-differs={String(comparison.differs)}>
          {comparison.text}
        </div>
      ) : null}
      {candidates.length ? (
        <div className="of-clinical">
          <label>
            <span className="of-muted">Approve a segmentation</span>
            <select
              data-testid="oncoflow-approved-seg-candidate"
              value={chosenUid}
              disabled={busy !== null}
              onChange={(event) => {
                setSelected(event.target.value);
                setChoice(null);
              }}
            >
              {candidates.map((c) => (
                <option key={c.sopInstanceUid} value={c.sopInstanceUid} title={c.sopInstanceUid} data-kind={c.kind}>
                  {c.label}
                  {approval?.sop_instance_uid === c.sopInstanceUid ? ' (approved)' : ''}
                </option>
              ))}
            </select>
          </label>
          <button type="button" data-testid="oncoflow-approved-seg-approve" disabled={busy !== null || !chosenUid || choice !== null} onClick={() => send(chosenUid)}>
            {busy === 'approve' ? 'Approving…' : 'Approve'}
          </button>
        </div>
      ) : (
        <div className="of-muted" data-testid="oncoflow-approved-seg-none">
          {segs === null && !segsError
            ? 'Looking for SEGs to approve…'
            : 'No SEG to approve: refine the segmentation (Refine with SAM2) or store one from the viewer’s segmentation tools.'}
        </div>
      )}
      <button type="button" className="of-link" data-testid="oncoflow-approved-seg-refresh" disabled={busy !== null} onClick={() => setSegsGeneration((g) => g + 1)}>
        Look for new SEGs
      </button>
      {segsError ? (
        <div className="of-error" data-testid="oncoflow-approved-seg-list-error">
          {segsError}
        </div>
      ) : null}
      {choice ? (
        <fieldset className="of-segments" data-testid="oncoflow-approved-seg-segments" data-sop-instance-uid={choice.sopInstanceUid}>
          <legend className="of-muted">The tumour’s segments</legend>
          {choice.options.map((option) => (
            <label key={option.number}>
              <input
                type="checkbox"
                data-testid="oncoflow-approved-seg-segment"
                value={option.number}
                checked={choice.chosen.includes(option.number)}
                disabled={busy !== null}
                onChange={() => setChoice({ ...choice, chosen: toggleSegment(choice.chosen, option.number) })}
              />
              {segmentOptionText(option)}
            </label>
          ))}
          <div className="of-actions">
            <button
              type="button"
              data-testid="oncoflow-approved-seg-approve-segments"
              disabled={busy !== null || choice.chosen.length === 0}
              onClick={() => send(choice.sopInstanceUid, choice.chosen)}
            >
              {busy === 'approve' ? 'Approving…' : 'Approve these segments'}
            </button>
            <button type="button" data-testid="oncoflow-approved-seg-segments-cancel" disabled={busy !== null} onClick={() => setChoice(null)}>
              Cancel
            </button>
          </div>
        </fieldset>
      ) : null}
      {approval ? (
        confirming ? (
          <div className="of-confirm" data-testid="oncoflow-approved-seg-confirm" role="group" aria-label="Withdraw the approval?">
            <div>Withdraw the approval? The automatic result (panel ensemble) is measured again, and the timeline, SR and report are recomputed.</div>
            <div className="of-actions">
              <button type="button" data-testid="oncoflow-approved-seg-withdraw-confirm" disabled={busy !== null} onClick={onWithdraw}>
                {busy === 'withdraw' ? 'Withdrawing…' : 'Withdraw'}
              </button>
              <button type="button" data-testid="oncoflow-approved-seg-withdraw-cancel" disabled={busy !== null} onClick={() => setConfirming(false)}>
                Cancel
              </button>
            </div>
          </div>
        ) : (
          <button type="button" data-testid="oncoflow-approved-seg-withdraw" disabled={busy !== null} onClick={() => setConfirming(true)}>
            Withdraw approval
          </button>
        )
      ) : null}
      {message ? (
        <div
          className={message.kind === 'error' ? 'of-error' : 'of-muted'}
          data-testid="oncoflow-approved-seg-message"
          data-kind={message.kind}
          role={message.kind === 'error' ? 'alert' : undefined}
        >
          {message.text}
        </div>
      ) : null}
      {history.length ? (
        <details data-testid="oncoflow-approved-seg-history">
          <summary className="of-muted">Approvals of this study ({history.length})</summary>
          <ul>
            {history.map((entry, index) => (
              <li key={entry.approval_id ?? index} className="of-muted" title={entry.sop_instance_uid}>
                {entry.source || 'SEG'}: {describeApproval(entry)}
                {entry.withdrawn_at ? `; withdrawn${entry.withdrawn_by ? ` by ${entry.withdrawn_by}` : ''}, ${approvalTime(entry.withdrawn_at)}` : '; in force'}
              </li>
            ))}
          </ul>
        </details>
      ) : null}
    </section>
  );
}
