/**
 * "Refine with SAM2": while on, a click on a viewport becomes a point prompt in patient
 * coordinates, OncoFlow writes a refined SEG, and the viewer fetches and shows it.
 */

import { useCallback, useEffect, useRef, useState } from 'react';
import { OncoFlowApiError, type OncoFlowApi, type RefineResult } from '../api';
import type { ViewerBridge, ViewerPoint } from '../viewerBridge';

export type RefineStatus =
  | { kind: 'off' }
  | { kind: 'waiting' }
  | { kind: 'sending'; point: ViewerPoint }
  | { kind: 'done'; point: ViewerPoint; result: RefineResult; viewerMessage: string }
  | { kind: 'error'; message: string };

export interface RefineTool {
  enabled: boolean;
  status: RefineStatus;
  toggle: () => void;
}

export function useRefineTool(
  api: OncoFlowApi,
  viewer: ViewerBridge,
  fallbackStudyUid: string | null,
  onRefined: (result: RefineResult) => void,
): RefineTool {
  const [enabled, setEnabled] = useState(false);
  const [status, setStatus] = useState<RefineStatus>({ kind: 'off' });
  const busy = useRef(false);
  const latest = useRef({ fallbackStudyUid, onRefined });
  latest.current = { fallbackStudyUid, onRefined };

  const refineAt = useCallback(
    async (point: ViewerPoint) => {
      const studyUid = point.studyInstanceUid ?? latest.current.fallbackStudyUid;
      if (busy.current) {
        return;
      }
      if (!studyUid) {
        setStatus({ kind: 'error', message: 'the clicked viewport shows no study' });
        return;
      }
      busy.current = true;
      setStatus({ kind: 'sending', point });
      try {
        const result = await api.refine(studyUid, {
          points: [{ position_mm: point.positionMm, positive: point.positive }],
          include_current: true,
        });
        latest.current.onRefined(result);
        setStatus({ kind: 'done', point, result, viewerMessage: 'fetching the new SEG…' });
        const shown = await viewer
          .showNewSeries(studyUid, result.series_instance_uid ?? null, point.viewportId)
          .catch((error: unknown) => ({ message: `the new SEG could not be fetched: ${error instanceof Error ? error.message : String(error)}` }));
        setStatus({ kind: 'done', point, result, viewerMessage: shown.message });
      } catch (error) {
        const message =
          error instanceof OncoFlowApiError ? `${error.message} (HTTP ${error.status})` : error instanceof Error ? error.message : String(error);
        setStatus({ kind: 'error', message });
      } finally {
        busy.current = false;
      }
    },
    [api, viewer],
  );

  useEffect(() => {
    if (!enabled) {
      setStatus({ kind: 'off' });
      return undefined;
    }
    setStatus({ kind: 'waiting' });
    return viewer.capturePoints(
      (point) => void refineAt(point),
      (message) => setStatus({ kind: 'error', message }),
    );
  }, [enabled, viewer, refineAt]);

  const toggle = useCallback(() => setEnabled((on) => !on), []);
  return { enabled, status, toggle };
}
