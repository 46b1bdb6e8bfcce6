/**
 * Leads the eye to the lesion: once the timeline and the viewports are there, each viewport shows its
 * study's fused (ensemble) SEG, goes to the slice nearest the largest target lesion and gets a window
 * from that slice; a lesion row clicked later moves the viewports to that lesion.
 */

import { useCallback, useEffect, useRef, useState } from 'react';
import type { PatientTimeline } from '../api';
import { planLesionJump, type LesionJump } from '../lesionNavigation';
import type { SliceShown, SliceTarget, ViewerBridge, ViewportStudy } from '../viewerBridge';

export interface NavigationStatus {
  state: 'working' | 'done' | 'failed';
  /** The lesion shown (null when the visit has none: the viewports only got their SEG and window). */
  trackingId: string | null;
  text: string;
}

export interface LesionNavigation {
  status: NavigationStatus | null;
  /** Moves the viewports to a lesion of the focus visit (the lesion table's rows). */
  goToLesion: (trackingId: string) => void;
}

function describe(jump: LesionJump | null, shown: SliceShown[], viewports: readonly ViewportStudy[], dateOf: (uid: string) => string): string {
  const parts = shown.map((s) => {
    const study = viewports.find((v) => v.viewportId === s.viewportId)?.studyInstanceUid ?? '';
    const target = jump?.targets.find((t) => t.viewportId === s.viewportId);
    const slice = s.sliceIndex === null ? 'no slice' : `slice ${s.sliceIndex + 1}/${s.sliceCount}`;
    const where = target?.source === 'other' ? ' (lesion not in this visit: the current visit’s position)' : '';
    return `${dateOf(study)}: ${slice}${where}${s.problem ? ` — ${s.problem}` : ''}`;
  });
  return parts.join('; ');
}

/**
 * `timeline` null with `timelineSettled` (the route answered 404 or failed): the viewports still get a
 * window from the slice they show, nothing else.
 */
export function useLesionNavigation(
  viewer: ViewerBridge,
  timeline: PatientTimeline | null,
  timelineSettled: boolean,
  viewerStudyUids: readonly string[],
  focusStudyUid: string | null,
  viewerVersion: number,
): LesionNavigation {
  const [status, setStatus] = useState<NavigationStatus | null>(null);
  const opened = useRef<Set<string>>(new Set());
  const sequence = useRef(0);

  const dateOf = useCallback(
    (uid: string): string => timeline?.time_points.find((t) => t.study_instance_uid === uid)?.study_date ?? uid.slice(-8),
    [timeline],
  );

  // First open: the SEGs, then the largest target lesion of the current visit (the URL's first study), then the window.
  useEffect(() => {
    const primary = viewerStudyUids[0] ?? null;
    const viewports = viewer.viewportStudies();
    const studiesShown = new Set(viewports.map((v) => v.studyInstanceUid));
    if ((!timeline && !timelineSettled) || !primary || studiesShown.size < Math.min(viewerStudyUids.length, 2) || !studiesShown.has(primary)) {
      return;
    }
    const key = `${primary}|${[...studiesShown].sort().join(',')}`;
    if (opened.current.has(key)) {
      return;
    }
    opened.current.add(key);
    const run = ++sequence.current;
    setStatus({ state: 'working', trackingId: null, text: 'Opening the viewports on the lesion…' });
    void (async () => {
      const problems: string[] = [];
      for (const viewport of viewports) {
        const seg = timeline?.time_points.find((t) => t.study_instance_uid === viewport.studyInstanceUid)?.seg_sop_instance_uid;
        if (seg) {
          const shown = await viewer.showSegmentation(viewport.viewportId, seg);
          if (!shown.shown) {
            problems.push(`${dateOf(viewport.studyInstanceUid)}: ${shown.message}`);
          }
        }
      }
      // the SEG may have put another series of the same study in a viewport: plan with the viewports as they are now
      const now = viewer.viewportStudies();
      const jump = planLesionJump(timeline, now, primary, null);
      const targets: SliceTarget[] = jump ? jump.targets : now.map((v) => ({ viewportId: v.viewportId, positionMm: null }));
      const shown = await viewer.goTo(targets, { setWindow: true });
      if (run !== sequence.current) {
        return; // a row was clicked meanwhile: its status stands
      }
      const where = describe(jump, shown, now, dateOf);
      const lead = jump ? `On ${jump.trackingId} (largest target lesion)` : 'No lesion to open on';
      const failed = problems.length > 0 || shown.some((s) => s.problem);
      setStatus({
        state: failed ? 'failed' : 'done',
        trackingId: jump?.trackingId ?? null,
        text: `${lead}: ${where}${problems.length ? `. ${problems.join('; ')}` : ''}.`,
      });
    })().catch((error: unknown) => {
      setStatus({ state: 'failed', trackingId: null, text: `Could not open on the lesion: ${error instanceof Error ? error.message : String(error)}` });
    });
  }, [viewer, timeline, timelineSettled, viewerStudyUids, viewerVersion, dateOf]);

  const goToLesion = useCallback(
    (trackingId: string) => {
      const viewports = viewer.viewportStudies();
      const jump = planLesionJump(timeline, viewports, focusStudyUid, trackingId);
      if (!jump) {
        setStatus({ state: 'failed', trackingId, text: `${trackingId} is not in any visit shown.` });
        return;
      }
      const run = ++sequence.current;
      setStatus({ state: 'working', trackingId, text: `Going to ${trackingId}…` });
      viewer
        .goTo(jump.targets, { setWindow: false })
        .then((shown) => {
          if (run === sequence.current) {
            const failed = shown.some((s) => s.problem);
            setStatus({ state: failed ? 'failed' : 'done', trackingId, text: `On ${trackingId}: ${describe(jump, shown, viewports, dateOf)}.` });
          }
        })
        .catch((error: unknown) => {
          if (run === sequence.current) {
            setStatus({ state: 'failed', trackingId, text: `Could not go to ${trackingId}: ${error instanceof Error ? error.message : String(error)}` });
          }
        });
    },
    [viewer, timeline, focusStudyUid, dateOf],
  );

  return { status, goToLesion };
}
