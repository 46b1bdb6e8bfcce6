/**
 * The panel's data: the viewer's studies, the focus study's job (polled while it runs), the
 * patient's timeline, and linked scrolling from OncoFlow's registration.
 */

import { useCallback, useEffect, useRef, useState } from 'react';
import { OncoFlowApiError, type OncoFlowApi, type PatientTimeline, type StudyJob } from '../api';
import { isActiveJobState, type Loadable } from '../panelModel';
import { JOB_POLL_INTERVAL_MS, startPolling } from '../poller';
import { planViewportLinks, type ViewerBridge } from '../viewerBridge';

export interface PanelData {
  viewerStudyUids: string[];
  focusStudyUid: string | null;
  setFocusStudyUid: (uid: string) => void;
  patientId: string | null;
  job: Loadable<StudyJob>;
  timeline: Loadable<PatientTimeline>;
  /** Polls the focus study's job again (after a re-analysis or a refinement). */
  reloadJob: () => void;
  reloadTimeline: () => void;
  /** What linked scrolling could use, for the panel to say. */
  linkStatus: string | null;
  /** Counts the viewer's changes (display sets, viewports): effects that read the viewer depend on it. */
  viewerVersion: number;
}

function messageOf(error: unknown): string {
  if (error instanceof OncoFlowApiError) {
    return `${error.message} (HTTP ${error.status})`;
  }
  return error instanceof Error ? error.message : String(error);
}

function sameUids(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((uid, i) => uid === b[i]);
}

export function usePanelData(api: OncoFlowApi, viewer: ViewerBridge, pollIntervalMs = JOB_POLL_INTERVAL_MS): PanelData {
  const [viewerStudyUids, setViewerStudyUids] = useState<string[]>(() => viewer.studyInstanceUids());
  const [chosenFocus, setChosenFocus] = useState<string | null>(null);
  const [viewerVersion, setViewerVersion] = useState(0);
  const [patientId, setPatientId] = useState<string | null>(null);
  const [job, setJob] = useState<Loadable<StudyJob>>({ status: 'idle' });
  const [timeline, setTimeline] = useState<Loadable<PatientTimeline>>({ status: 'idle' });
  const [jobGeneration, setJobGeneration] = useState(0);
  const [timelineGeneration, setTimelineGeneration] = useState(0);
  const [linkStatus, setLinkStatus] = useState<string | null>(null);
  const lastJobState = useRef<string | null>(null);

  const focusStudyUid = chosenFocus && viewerStudyUids.includes(chosenFocus) ? chosenFocus : (viewerStudyUids[0] ?? null);

  // The viewer's studies and viewports change as OHIF loads: follow them.
  useEffect(
    () =>
      viewer.subscribe(() => {
        setViewerStudyUids((previous) => {
          const next = viewer.studyInstanceUids();
          return sameUids(previous, next) ? previous : next;
        });
        setViewerVersion((v) => v + 1);
      }),
    [viewer],
  );

  // The focus study's job, polled while queued or running.
  useEffect(() => {
    if (!focusStudyUid) {
      setJob({ status: 'idle' });
      return undefined;
    }
    setJob((previous) => (previous.status === 'loaded' && previous.value.study_instance_uid === focusStudyUid ? previous : { status: 'loading' }));
    return startPolling<StudyJob | null>({
      load: () => api.studyJob(focusStudyUid),
      intervalMs: pollIntervalMs,
      shouldContinue: (result) => result !== null && isActiveJobState(result.state),
      onResult: (result) => {
        setJob(result ? { status: 'loaded', value: result } : { status: 'missing', message: `No OncoFlow job for study ${focusStudyUid}.` });
        const state = result?.state ?? null;
        if (lastJobState.current !== null && lastJobState.current !== state && state === 'done') {
          setTimelineGeneration((g) => g + 1); // a finished job changes the timeline
        }
        lastJobState.current = state;
      },
      onError: (error) => setJob({ status: 'error', message: messageOf(error) }),
    });
  }, [api, focusStudyUid, jobGeneration, pollIntervalMs]);

  // The focus study's PatientID, once OHIF has its metadata (or from QIDO): asked again on
  // each viewer change until it is known, then no more.
  const patientRetryKey = patientId === null ? viewerVersion : -1;
  useEffect(() => {
    if (!focusStudyUid) {
      return undefined;
    }
    let cancelled = false;
    viewer
      .patientId(focusStudyUid)
      .then((id) => {
        if (!cancelled && id !== null) {
          setPatientId((previous) => (previous === id ? previous : id));
        }
      })
      .catch(() => undefined); // retried on the next viewer change
    return () => {
      cancelled = true;
    };
  }, [viewer, focusStudyUid, patientRetryKey]);

  // The patient's timeline.
  useEffect(() => {
    if (patientId === null) {
      setTimeline({ status: 'idle' });
      return undefined;
    }
    let cancelled = false;
    setTimeline((previous) => (previous.status === 'loaded' ? previous : { status: 'loading' }));
    api
      .patientTimeline(patientId)
      .then((value) => {
        if (!cancelled) {
          setTimeline(value ? { status: 'loaded', value } : { status: 'missing', message: `No OncoFlow time point for patient ${patientId} yet.` });
        }
      })
      .catch((error: unknown) => {
        if (!cancelled) {
          setTimeline({ status: 'error', message: messageOf(error) });
        }
      });
    return () => {
      cancelled = true;
    };
  }, [api, patientId, timelineGeneration]);

  // Linked scrolling: register OncoFlow's follow-up -> baseline registration for viewports
  // that show both (the hanging protocol's slice synchronizer then uses it).
  const loadedTimeline = timeline.status === 'loaded' ? timeline.value : null;
  useEffect(() => {
    const viewports = viewer.viewportStudies();
    const studiesShown = new Set(viewports.map((v) => v.studyInstanceUid));
    if (studiesShown.size < 2) {
      setLinkStatus(null);
      return;
    }
    const links = planViewportLinks(viewports, loadedTimeline);
    const registered = viewer.registerViewportLinks(links);
    setLinkStatus(
      registered
        ? `Linked scrolling uses OncoFlow’s registration: ${links.map((l) => l.description).join('; ')}.`
        : 'Linked scrolling: no OncoFlow registration between the studies shown; slices follow only within one frame of reference.',
    );
  }, [viewer, loadedTimeline, viewerVersion]);

  const reloadJob = useCallback(() => setJobGeneration((g) => g + 1), []);
  const reloadTimeline = useCallback(() => setTimelineGeneration((g) => g + 1), []);
  const setFocusStudyUid = useCallback((uid: string) => {
    lastJobState.current = null;
    setChosenFocus(uid);
    setPatientId(null);
  }, []);

  return {
    viewerStudyUids,
    focusStudyUid,
    setFocusStudyUid,
    patientId,
    job,
    timeline,
    reloadJob,
    reloadTimeline,
    linkStatus,
    viewerVersion,
  };
}
