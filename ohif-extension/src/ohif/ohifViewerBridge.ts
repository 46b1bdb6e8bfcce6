/**
 * The panel's ViewerBridge over OHIF 3.13 services (display sets, viewport grid,
 * cornerstone viewports, the active DICOMweb data source).
 */

import { captureClicks } from '../clickCapture';
import {
  studyUidsFromSearch,
  type SeriesShown,
  type Vec3,
  type ViewerBridge,
  type ViewerPoint,
  type ViewportLink,
  type ViewportStudy,
} from '../viewerBridge';
import {
  isRecord,
  type CommandsManager,
  type ExtensionManager,
  type OhifDataSource,
  type OhifDisplaySet,
  type ServicesManager,
  type SpatialRegistrationProvider,
} from './types';
import { OHIF } from '../ids';

export interface OhifViewerBridgeOptions {
  servicesManager: ServicesManager;
  extensionManager: ExtensionManager;
  commandsManager: CommandsManager;
  /** The page's query string (tests pass their own). */
  search?: () => string;
}

const NEW_SERIES_WAIT_MS = 8000;

/** The PatientID in the loaded metadata of a study's display sets, if any. */
export function patientIdFromDisplaySets(displaySets: readonly OhifDisplaySet[], studyInstanceUid: string): string | null {
  for (const displaySet of displaySets) {
    if (displaySet.StudyInstanceUID !== studyInstanceUid) {
      continue;
    }
    const candidates = [displaySet.instance, ...(displaySet.instances ?? []), ...(displaySet.images ?? [])];
    const found = candidates.find((instance) => typeof instance?.PatientID === 'string');
    if (found?.PatientID !== undefined) {
      return found.PatientID;
    }
  }
  return null;
}

/** Study UIDs of the display sets in first-seen order. */
export function studyUidsOfDisplaySets(displaySets: readonly OhifDisplaySet[]): string[] {
  const uids: string[] = [];
  for (const displaySet of displaySets) {
    if (displaySet.StudyInstanceUID && !uids.includes(displaySet.StudyInstanceUID)) {
      uids.push(displaySet.StudyInstanceUID);
    }
  }
  return uids;
}

function spatialRegistrationProvider(extensionManager: ExtensionManager): SpatialRegistrationProvider | null {
  // The cornerstone extension's `common` utility module hands out its cornerstone3D instance.
  const entry = extensionManager.getModuleEntry(OHIF.cornerstoneCommonUtility);
  if (!isRecord(entry) || !isRecord(entry.exports) || typeof entry.exports.getCornerstoneLibraries !== 'function') {
    return null;
  }
  const libraries: unknown = (entry.exports.getCornerstoneLibraries as () => unknown)();
  const provider =
    isRecord(libraries) && isRecord(libraries.cornerstone) && isRecord(libraries.cornerstone.utilities)
      ? libraries.cornerstone.utilities.spatialRegistrationMetadataProvider
      : null;
  return isRecord(provider) && typeof provider.add === 'function' ? (provider as unknown as SpatialRegistrationProvider) : null;
}

export function createOhifViewerBridge(options: OhifViewerBridgeOptions): ViewerBridge {
  const { servicesManager, extensionManager, commandsManager } = options;
  const services = () => servicesManager.services;
  const search = options.search ?? (() => window.location.search);

  const dataSource = (): OhifDataSource | null => extensionManager.getActiveDataSource()?.[0] ?? null;

  const studyOfViewport = (viewportId: string): string | null => {
    const { viewportGridService, displaySetService } = services();
    const viewport = viewportGridService.getState().viewports.get(viewportId);
    for (const uid of viewport?.displaySetInstanceUIDs ?? []) {
      const study = displaySetService.getDisplaySetByUID(uid)?.StudyInstanceUID;
      if (study) {
        return study;
      }
    }
    return null;
  };

  const findSeriesDisplaySet = (seriesInstanceUid: string): OhifDisplaySet | undefined =>
    services()
      .displaySetService.getActiveDisplaySets()
      .find((ds) => ds.SeriesInstanceUID === seriesInstanceUid);

  const waitForSeries = (seriesInstanceUid: string): Promise<OhifDisplaySet | undefined> =>
    new Promise((resolve) => {
      const existing = findSeriesDisplaySet(seriesInstanceUid);
      if (existing) {
        resolve(existing);
        return;
      }
      const { displaySetService } = services();
      const events = [displaySetService.EVENTS.DISPLAY_SETS_ADDED, displaySetService.EVENTS.DISPLAY_SETS_CHANGED].filter(
        (e): e is string => typeof e === 'string',
      );
      const subscriptions = events.map((event) =>
        displaySetService.subscribe(event, () => {
          const found = findSeriesDisplaySet(seriesInstanceUid);
          if (found) {
            finish(found);
          }
        }),
      );
      const timer = setTimeout(() => finish(findSeriesDisplaySet(seriesInstanceUid)), NEW_SERIES_WAIT_MS);
      function finish(found: OhifDisplaySet | undefined): void {
        clearTimeout(timer);
        subscriptions.forEach((s) => s.unsubscribe());
        resolve(found);
      }
    });

  return {
    studyInstanceUids() {
      const fromUrl = studyUidsFromSearch(search());
      return fromUrl.length ? fromUrl : studyUidsOfDisplaySets(services().displaySetService.getActiveDisplaySets());
    },

    async patientId(studyInstanceUid) {
      const loaded = patientIdFromDisplaySets(services().displaySetService.getActiveDisplaySets(), studyInstanceUid);
      if (loaded !== null) {
        return loaded;
      }
      const studies = await dataSource()?.query?.studies?.search({ studyInstanceUid });
      const match = studies?.find((s) => !s.studyInstanceUid || s.studyInstanceUid === studyInstanceUid);
      return match?.mrn ? match.mrn : null;
    },

    subscribe(listener) {
      const { displaySetService, viewportGridService } = services();
      const pairs: Array<[typeof displaySetService | typeof viewportGridService, string | undefined]> = [
        [displaySetService, displaySetService.EVENTS.DISPLAY_SETS_ADDED],
        [displaySetService, displaySetService.EVENTS.DISPLAY_SETS_CHANGED],
        [viewportGridService, viewportGridService.EVENTS.GRID_STATE_CHANGED],
        [viewportGridService, viewportGridService.EVENTS.VIEWPORTS_READY],
      ];
      const subscriptions = pairs
        .filter((pair): pair is [typeof displaySetService, string] => typeof pair[1] === 'string')
        .map(([service, event]) => service.subscribe(event, () => listener()));
      return () => subscriptions.forEach((s) => s.unsubscribe());
    },

    viewportStudies() {
      const result: ViewportStudy[] = [];
      for (const viewportId of services().viewportGridService.getState().viewports.keys()) {
        const studyInstanceUid = studyOfViewport(viewportId);
        if (studyInstanceUid) {
          result.push({ viewportId, studyInstanceUid });
        }
      }
      return result;
    },

    capturePoints(onPoint, onError) {
      const { viewportGridService, cornerstoneViewportService } = services();
      if (!cornerstoneViewportService) {
        onError('cornerstoneViewportService is not available in this OHIF');
        return () => undefined;
      }
      const attached = new Map<string, { element: HTMLElement; stop: () => void; cursor: string }>();

      const attachAll = (): void => {
        const wanted = new Set(viewportGridService.getState().viewports.keys());
        for (const [viewportId, entry] of attached) {
          const viewport = cornerstoneViewportService.getCornerstoneViewport(viewportId);
          if (!wanted.has(viewportId) || viewport?.element !== entry.element) {
            entry.stop();
            entry.element.style.cursor = entry.cursor;
            attached.delete(viewportId);
          }
        }
        for (const viewportId of wanted) {
          const viewport = cornerstoneViewportService.getCornerstoneViewport(viewportId);
          if (!viewport?.element || attached.has(viewportId)) {
            continue;
          }
          const element = viewport.element;
          const stop = captureClicks(element, ({ canvasPoint, shiftKey }) => {
            // The viewport may have been replaced since we attached: ask for the current one.
            const current = cornerstoneViewportService.getCornerstoneViewport(viewportId);
            if (!current) {
              onError(`viewport ${viewportId} is gone`);
              return;
            }
            const world = Array.from(current.canvasToWorld(canvasPoint));
            if (world.length < 3 || world.slice(0, 3).some((v) => !Number.isFinite(v))) {
              onError('this viewport cannot convert the click to patient coordinates (no image?)');
              return;
            }
            const point: ViewerPoint = {
              viewportId,
              studyInstanceUid: studyOfViewport(viewportId),
              positionMm: world.slice(0, 3) as Vec3,
              positive: !shiftKey,
            };
            onPoint(point);
          });
          attached.set(viewportId, { element, stop, cursor: element.style.cursor });
          element.style.cursor = 'crosshair';
        }
      };

      attachAll();
      const events = [viewportGridService.EVENTS.GRID_STATE_CHANGED, viewportGridService.EVENTS.VIEWPORTS_READY].filter(
        (e): e is string => typeof e === 'string',
      );
      const subscriptions = events.map((event) => viewportGridService.subscribe(event, () => setTimeout(attachAll, 0)));
      if (attached.size === 0) {
        onError('no viewport to click on yet');
      }
      return () => {
        subscriptions.forEach((s) => s.unsubscribe());
        for (const entry of attached.values()) {
          entry.stop();
          entry.element.style.cursor = entry.cursor;
        }
        attached.clear();
      };
    },

    async showNewSeries(studyInstanceUid, seriesInstanceUid, viewportId): Promise<SeriesShown> {
      const source = dataSource();
      if (!source) {
        return { found: false, displayed: false, message: 'no active data source' };
      }
      // OHIF 3.13.2 caches a study's metadata promise under `${name}:${uid}` but deletes it by
      // `uid`; both keys are cleared so the retrieve below really asks the server again.
      const cacheKeys = [studyInstanceUid, `${source.getConfig?.()?.name ?? ''}:${studyInstanceUid}`];
      const forget = (): void => cacheKeys.forEach((key) => source.deleteStudyMetadataPromise?.(key));
      forget();
      try {
        await source.retrieve.series.metadata({
          StudyInstanceUID: studyInstanceUid,
          ...(seriesInstanceUid ? { filters: { seriesInstanceUID: [seriesInstanceUid] } } : {}),
        });
      } finally {
        forget(); // a later full retrieve must not get this filtered answer
      }
      if (!seriesInstanceUid) {
        return { found: false, displayed: false, message: 'series metadata reloaded' };
      }
      // DicomMetadataStore fires INSTANCES_ADDED; the mode route turns them into display sets.
      const displaySet = await waitForSeries(seriesInstanceUid);
      if (!displaySet) {
        return { found: false, displayed: false, message: 'the new SEG did not appear in the viewer (reload the page to see it)' };
      }
      const { hangingProtocolService } = services();
      if (!viewportId || !hangingProtocolService) {
        return { found: true, displayed: false, message: 'the new SEG is in the study browser' };
      }
      try {
        // What a double click on its thumbnail does (the default extension's handler).
        const viewportsToUpdate = hangingProtocolService.getViewportsRequireUpdate(
          viewportId,
          displaySet.displaySetInstanceUID,
          false,
        );
        commandsManager.run('setDisplaySetsForViewports', { viewportsToUpdate });
        return { found: true, displayed: true, message: 'the new SEG is shown in the clicked viewport' };
      } catch (error) {
        return {
          found: true,
          displayed: false,
          message: `the new SEG is in the study browser (not shown: ${error instanceof Error ? error.message : String(error)})`,
        };
      }
    },

    registerViewportLinks(links: ViewportLink[]) {
      if (!links.length) {
        return 0;
      }
      const provider = spatialRegistrationProvider(extensionManager);
      if (!provider) {
        return 0;
      }
      for (const link of links) {
        provider.add([link.targetViewportId, link.sourceViewportId], Float32Array.from(link.matrixColumnMajor));
      }
      return links.length;
    },
  };
}
