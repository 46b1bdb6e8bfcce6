import { useCallback, useMemo, useState } from 'react';
import { OncoFlowApiError, type OncoFlowApi } from '../api';
import { buildPanelView } from '../panelModel';
import type { ViewerBridge } from '../viewerBridge';
import { ApprovedSegControl } from './ApprovedSegControl';
import { ChangeSummary } from './ChangeSummary';
import { ClinicalStateControl } from './ClinicalStateControl';
import { ExpertTable } from './ExpertTable';
import { JobStatus } from './JobStatus';
import { LesionTable } from './LesionTable';
import { RegionTable } from './RegionTable';
import { RefineControl } from './RefineControl';
import { ReportLink, type PdfOpener } from './ReportLink';
import { ResponseSummary } from './ResponseSummary';
import { TimelineChart } from './TimelineChart';
import { usePanelData } from './usePanelData';
import { useLesionNavigation } from './useLesionNavigation';
import { useRefineTool } from './useRefineTool';

export interface OncoFlowPanelProps {
  api: OncoFlowApi;
  viewer: ViewerBridge;
  /** Job polling period (2 s; tests shorten it). */
  pollIntervalMs?: number;
  /** Time zone of event clocks (the browser's by default). */
  timeZone?: string;
  /** How a fetched report PDF is shown (the browser's tabs and object URLs by default; tests inject one). */
  pdfOpener?: PdfOpener;
}

function shortUid(uid: string): string {
  return uid.length > 14 ? `…${uid.slice(-12)}` : uid;
}

/** OncoFlow's results for the studies in the viewer. */
export function OncoFlowPanel({ api, viewer, pollIntervalMs, timeZone, pdfOpener }: OncoFlowPanelProps) {
  const data = usePanelData(api, viewer, pollIntervalMs);
  const [reanalyse, setReanalyse] = useState<{ busy: boolean; message: string | null }>({ busy: false, message: null });
  const { focusStudyUid, reloadJob } = data;

  const refine = useRefineTool(api, viewer, focusStudyUid, reloadJob);

  const view = useMemo(
    () =>
      buildPanelView({
        focusStudyUid,
        viewerStudyUids: data.viewerStudyUids,
        job: data.job,
        timeline: data.timeline,
        ...(timeZone ? { timeZone } : {}),
      }),
    [focusStudyUid, data.viewerStudyUids, data.job, data.timeline, timeZone],
  );

  const onReanalyse = useCallback(() => {
    if (!focusStudyUid) {
      return;
    }
    setReanalyse({ busy: true, message: null });
    api
      .reanalyse(focusStudyUid)
      .then((accepted) => {
        setReanalyse({ busy: false, message: `Re-analysis queued (job ${accepted.job_id}).` });
        reloadJob();
      })
      .catch((error: unknown) => {
        const message = error instanceof OncoFlowApiError ? `${error.message} (HTTP ${error.status})` : String(error);
        setReanalyse({ busy: false, message: `Re-analysis not queued: ${message}` });
        reloadJob();
      });
  }, [api, focusStudyUid, reloadJob]);

  // a saved clinical state changes the response (timeline) and may queue an SR update (the job)
  const { reloadTimeline } = data;
  const onClinicalSaved = useCallback(() => {
    reloadTimeline();
    reloadJob();
  }, [reloadTimeline, reloadJob]);

  const timeline = data.timeline.status === 'loaded' ? data.timeline.value : null;
  const dateOf = (uid: string): string | null => timeline?.time_points.find((t) => t.study_instance_uid === uid)?.study_date ?? null;
  const timelineSettled = data.timeline.status === 'missing' || data.timeline.status === 'error';
  const navigation = useLesionNavigation(viewer, timeline, timelineSettled, data.viewerStudyUids, focusStudyUid, data.viewerVersion);
  const focusTimePoint = timeline?.time_points.find((t) => t.study_instance_uid === focusStudyUid) ?? null;

  return (
    <div className="oncoflow-panel" data-testid="oncoflow-panel" data-study-instance-uid={focusStudyUid ?? ''}>
      {data.viewerStudyUids.length > 1 ? (
        <div className="of-studies" role="group" aria-label="Study">
          {data.viewerStudyUids.map((uid, index) => (
            <button
              key={uid}
              type="button"
              aria-pressed={uid === focusStudyUid}
              data-testid="oncoflow-study-choice"
              data-study-instance-uid={uid}
              title={uid}
              onClick={() => data.setFocusStudyUid(uid)}
            >
              {dateOf(uid) ?? shortUid(uid)}
              {index === 0 ? ' (current)' : ''}
            </button>
          ))}
        </div>
      ) : null}
      {!focusStudyUid ? <div className="of-muted">No study in the viewer yet.</div> : null}
      <JobStatus
        job={view.job}
        onReanalyse={onReanalyse}
        reanalyseDisabled={!focusStudyUid || reanalyse.busy || view.job.isActive}
        reanalyseMessage={reanalyse.message}
      />
      {view.review ? (
        <div className="of-flag of-flag-review" data-testid="oncoflow-review" role="alert">
          {view.review}
        </div>
      ) : null}
      <ChangeSummary flag={view.flag} volumes={view.volumes} comparison={view.comparison} />
      <ResponseSummary response={view.response} note={view.responseNote} />
      {focusStudyUid && focusTimePoint ? (
        <ClinicalStateControl
          api={api}
          studyInstanceUid={focusStudyUid}
          studyDate={focusTimePoint.study_date}
          fromTimeline={focusTimePoint.clinical ?? null}
          onSaved={onClinicalSaved}
          {...(timeZone ? { timeZone } : {})}
        />
      ) : null}
      {focusStudyUid && data.job.status === 'loaded' ? (
        // an approval (or its withdrawal) recomputes the timeline and the job's outcome, as a clinical state does
        <ApprovedSegControl api={api} studyInstanceUid={focusStudyUid} job={data.job.value} onChanged={onClinicalSaved} />
      ) : null}
      <LesionTable lesions={view.lesions} onSelect={navigation.goToLesion} selected={navigation.status?.trackingId ?? null} />
      {navigation.status ? (
        <div
          className={navigation.status.state === 'failed' ? 'of-error' : 'of-muted'}
          data-testid="oncoflow-navigation"
          data-state={navigation.status.state}
          data-tracking-id={navigation.status.trackingId ?? ''}
        >
          {navigation.status.text}
        </div>
      ) : null}
      <TimelineChart chart={view.chart} timePoints={view.timePoints} note={view.timelineNote} />
      <RegionTable regions={view.regions} />
      <ExpertTable experts={view.experts} agreement={view.agreement} />
      <ReportLink report={view.report} api={api} {...(pdfOpener ? { opener: pdfOpener } : {})} />
      <RefineControl tool={refine} refinements={view.refinements} disabled={!focusStudyUid} />
      {data.linkStatus ? (
        <div className="of-muted" data-testid="oncoflow-link-status">
          {data.linkStatus}
        </div>
      ) : null}
    </div>
  );
}
