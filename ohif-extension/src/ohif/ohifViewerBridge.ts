/**
 * The panel's ViewerBridge over OHIF 3.13 services (display sets, viewport grid,
 * cornerstone viewports, the active DICOMweb data source).
 */

import { captureClicks } from '../clickCapture';
import { chooseVoi, modalityPixels, nearestSlice, type ImagePlane, type VoiChoice } from '../lesionNavigation';
import {
  studyUidsFromSearch,
  type SegmentationShown,
  type SeriesShown,
  type SliceShown,
  type SliceTarget,
  type Vec3,
  type ViewerBridge,
  type ViewerPoint,
  type ViewportLink,
  type ViewportStudy,
} from '../viewerBridge';
import {
  isRecord,
  type CommandsManager,
  type CornerstoneMetaData,
  type CornerstoneViewport,
  type ExtensionManager,
  type OhifDataSource,
  type OhifDisplaySet,
  type ServicesManager,
  type SpatialRegistrationProvider,
  type Synchronizer,
} from './types';
import { OHIF } from '../ids';
import { SLICE_SYNC_GROUP_ID } from '../hangingProtocol';

export interface OhifViewerBridgeOptions {
  servicesManager: ServicesManager;
  extensionManager: ExtensionManager;
  commandsManager: CommandsManager;
  /** The page's query string (tests pass their own). */
  search?: () => string;
}

const NEW_SERIES_WAIT_MS = 8000;
/** How long `showSegmentation` waits for the SEG's display set, then for the viewport to show it. */
const SEGMENTATION_WAIT_MS = 45000;
const POLL_MS = 100;
/** Synchronizer types (OHIF's names, lower case) that move slices: paused while `goTo` moves viewports. */
const SLICE_SYNC_TYPES = ['imageslice', 'stackimage'];

/** Resolves with `probe()`'s first truthy value, or null after `timeoutMs`. */
async function pollFor<T>(probe: () => T | null | undefined | false, timeoutMs: number): Promise<T | null> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value) {
      return value;
    }
    if (Date.now() >= deadline) {
      return null;
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

const nextFrame = (): Promise<void> =>
  new Promise((resolve) => (typeof requestAnimationFrame === 'function' ? requestAnimationFrame(() => resolve()) : setTimeout(resolve, 16)));

function asImagePlane(value: unknown): ImagePlane | null {
  if (!isRecord(value)) {
    return null;
  }
  const { imagePositionPatient, rowCosines, columnCosines } = value;
  const vector = (v: unknown): v is number[] => Array.isArray(v) && v.length === 3 && v.every((x) => typeof x === 'number');
  return vector(imagePositionPatient) && vector(rowCosines) && vector(columnCosines) ? { imagePositionPatient, rowCosines, columnCosines } : null;
}

/** WindowCenter / WindowWidth as the DICOM header gives them (cornerstone's `voiLutModule`), not the loader's min–max guess. */
function dicomWindow(value: unknown): { windowCenter: number[] | null; windowWidth: number[] | null } {
  const numbers = (v: unknown): number[] | null =>
    Array.isArray(v) ? v.filter((x): x is number => typeof x === 'number') : typeof v === 'number' ? [v] : null;
  return isRecord(value) ? { windowCenter: numbers(value.windowCenter), windowWidth: numbers(value.windowWidth) } : { windowCenter: null, windowWidth: null };
}

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

/** cornerstone3D's core module, from the cornerstone extension's `common` utility module (`getCornerstoneLibraries`). */
function cornerstoneCore(extensionManager: ExtensionManager): Record<string, unknown> | null {
  const entry = extensionManager.getModuleEntry(OHIF.cornerstoneCommonUtility);
  if (!isRecord(entry) || !isRecord(entry.exports) || typeof entry.exports.getCornerstoneLibraries !== 'function') {
    return null;
  }
  const libraries: unknown = (entry.exports.getCornerstoneLibraries as () => unknown)();
  return isRecord(libraries) && isRecord(libraries.cornerstone) ? libraries.cornerstone : null;
}

function spatialRegistrationProvider(extensionManager: ExtensionManager): SpatialRegistrationProvider | null {
  const core = cornerstoneCore(extensionManager);
  const provider = core && isRecord(core.utilities) ? core.utilities.spatialRegistrationMetadataProvider : null;
  return isRecord(provider) && typeof provider.add === 'function' ? (provider as unknown as SpatialRegistrationProvider) : null;
}

function cornerstoneMetaData(extensionManager: ExtensionManager): CornerstoneMetaData | null {
  const metaData = cornerstoneCore(extensionManager)?.metaData;
  return isRecord(metaData) && typeof metaData.get === 'function' ? (metaData as unknown as CornerstoneMetaData) : null;
}

/** The SEG display set of a SOP Instance UID among the viewer's display sets. */
export function segDisplaySetOf(displaySets: readonly OhifDisplaySet[], sopInstanceUid: string): OhifDisplaySet | undefined {
  return displaySets.find(
    (ds) => ds.Modality === 'SEG' && (ds.SOPInstanceUID === sopInstanceUid || ds.instance?.SOPInstanceUID === sopInstanceUid),
  );
}

/** Moves one viewport to the slice nearest its point and (when asked) sets its window from the slice it then shows. */
async function moveViewport(
  viewport: CornerstoneViewport | null | undefined,
  target: SliceTarget,
  setWindow: boolean,
  metaData: CornerstoneMetaData | null,
): Promise<SliceShown> {
  const result: SliceShown = { viewportId: target.viewportId, sliceIndex: null, sliceCount: 0, distanceMm: null, window: null, problem: '' };
  if (!viewport) {
    return { ...result, problem: 'no such viewport' };
  }
  const imageIds = viewport.getImageIds?.() ?? [];
  result.sliceCount = imageIds.length;
  if (target.positionMm) {
    const planes = metaData ? imageIds.map((imageId) => asImagePlane(metaData.get('imagePlaneModule', imageId))) : [];
    const nearest = nearestSlice(planes, target.positionMm);
    if (nearest && viewport.setImageIdIndex) {
      await viewport.setImageIdIndex(nearest.index);
      result.distanceMm = nearest.distanceMm;
    } else if (viewport.jumpToWorld) {
      viewport.jumpToWorld([...target.positionMm]); // not a stack of images: cornerstone finds the slice
    } else {
      result.problem = 'this viewport cannot be moved to a point';
    }
  }
  result.sliceIndex = viewport.getCurrentImageIdIndex?.() ?? null;
  if (setWindow) {
    const image = viewport.getCornerstoneImage?.();
    const imageId = viewport.getCurrentImageId?.();
    const raw = image?.voxelManager?.getScalarData?.() ?? image?.getPixelData?.();
    let window: VoiChoice | null = null;
    if (image && raw && viewport.setProperties) {
      const pixels = modalityPixels(raw, { scaled: image.preScale?.scaled, slope: image.slope, intercept: image.intercept });
      window = chooseVoi({ ...dicomWindow(imageId && metaData ? metaData.get('voiLutModule', imageId) : null), pixels });
    }
    if (window && viewport.setProperties) {
      viewport.setProperties({ voiRange: { lower: window.lower, upper: window.upper } });
      result.window = window;
    } else {
      result.problem = [result.problem, 'no window could be computed from the slice shown'].filter(Boolean).join('; ');
    }
  }
  viewport.render?.();
  return result;
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

  /** The slice synchronizers of these viewports (paused while `goTo` moves them, so each keeps its own point). */
  const sliceSynchronizers = (viewportIds: readonly string[]): Set<Synchronizer> => {
    const { syncGroupService } = services();
    const found = new Set<Synchronizer>();
    for (const viewportId of viewportIds) {
      let synchronizers: Synchronizer[] = [];
      try {
        synchronizers = syncGroupService?.getSynchronizersForViewport(viewportId) ?? [];
      } catch {
        synchronizers = []; // no rendering engine yet
      }
      for (const synchronizer of synchronizers) {
        const type = (syncGroupService?.getSynchronizerType?.(synchronizer) ?? '').toLowerCase();
        if (SLICE_SYNC_TYPES.includes(type) || synchronizer.id === SLICE_SYNC_GROUP_ID) {
          found.add(synchronizer);
        }
      }
    }
    return found;
  };

  /** The viewport shows the images of `displaySetUid` (in the grid, with an image loaded). */
  const showsImagesOf = (viewportId: string, displaySetUid: string): boolean => {
    const { viewportGridService, cornerstoneViewportService, displaySetService } = services();
    const inGrid = viewportGridService.getState().viewports.get(viewportId)?.displaySetInstanceUIDs ?? [];
    const current = cornerstoneViewportService?.getCornerstoneViewport(viewportId)?.getCurrentImageId?.();
    if (!inGrid.includes(displaySetUid) || !current) {
      return false;
    }
    // the cornerstone viewport is replaced a moment after the grid changes: its image must be one of the display set's
    const imageIds = (displaySetService.getDisplaySetByUID(displaySetUid)?.images ?? []).map((image) => image.imageId);
    return imageIds.length === 0 || imageIds.includes(current);
  };

  /** Resolves true once the viewport exists in cornerstone with an image on it (false after `timeoutMs`). */
  const viewportReady = async (viewportId: string, timeoutMs: number): Promise<boolean> =>
    (await pollFor(() => Boolean(services().cornerstoneViewportService?.getCornerstoneViewport(viewportId)?.getCurrentImageId?.()), timeoutMs)) ??
    false;

  const hasSegmentation = (viewportId: string, segmentationId: string): boolean => {
    const { segmentationService } = services();
    // without the service (not in OHIF 3.13) the viewport showing the images is all we can check
    return segmentationService ? segmentationService.getSegmentationRepresentations(viewportId, { segmentationId }).length > 0 : true;
  };

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

    async showSegmentation(viewportId, segSopInstanceUid): Promise<SegmentationShown> {
      if (!(await viewportReady(viewportId, SEGMENTATION_WAIT_MS))) {
        return { viewportId, shown: false, message: 'the viewport shows no image' };
      }
      // OHIF makes the SEG's display set once the study's series are in, and finds its images' display set
      const seg = await pollFor(() => {
        const found = segDisplaySetOf(services().displaySetService.getActiveDisplaySets(), segSopInstanceUid);
        return found?.referencedDisplaySetInstanceUID ? found : null;
      }, SEGMENTATION_WAIT_MS);
      if (!seg) {
        return { viewportId, shown: false, message: `the SEG ${segSopInstanceUid} (or the series it segments) is not in the viewer` };
      }
      const imagesUid = seg.referencedDisplaySetInstanceUID as string;
      const layers = (): string[] => services().viewportGridService.getState().viewports.get(viewportId)?.displaySetInstanceUIDs ?? [];
      const fail = (message: string): SegmentationShown => ({ viewportId, shown: false, message });
      try {
        if (!layers().includes(imagesUid)) {
          // the SEG's own image series first (the protocol may have hung another series of the study)
          commandsManager.run('setDisplaySetsForViewports', { viewportsToUpdate: [{ viewportId, displaySetInstanceUIDs: [imagesUid] }] });
          if (!(await pollFor(() => showsImagesOf(viewportId, imagesUid), SEGMENTATION_WAIT_MS))) {
            return fail('the viewport did not show the SEG’s image series in time');
          }
        }
        if (!layers().includes(seg.displaySetInstanceUID)) {
          // OHIF's "add as layer" (the viewport's data overlay menu): the SEG over the images it segments, loaded at
          // once. OHIF's other route (putting the SEG display set itself in the viewport) asks "load the segmentation?".
          commandsManager.run('addDisplaySetAsLayer', { viewportId, displaySetInstanceUID: seg.displaySetInstanceUID });
        }
      } catch (error) {
        return fail(`the SEG could not be shown: ${error instanceof Error ? error.message : String(error)}`);
      }
      const ready = (): boolean => hasSegmentation(viewportId, seg.displaySetInstanceUID) && showsImagesOf(viewportId, imagesUid);
      if (!(await pollFor(ready, SEGMENTATION_WAIT_MS))) {
        return fail('the viewport did not show the SEG in time');
      }
      return { viewportId, shown: true, message: 'SEG shown' };
    },

    async goTo(targets, { setWindow }): Promise<SliceShown[]> {
      const { cornerstoneViewportService } = services();
      if (!cornerstoneViewportService) {
        return targets.map((t) => ({ viewportId: t.viewportId, sliceIndex: null, sliceCount: 0, distanceMm: null, window: null, problem: 'no cornerstone viewports in this OHIF' }));
      }
      const metaData = cornerstoneMetaData(extensionManager);
      for (const target of targets) {
        await viewportReady(target.viewportId, SEGMENTATION_WAIT_MS);
      }
      const paused = sliceSynchronizers(targets.map((t) => t.viewportId));
      paused.forEach((s) => s.setEnabled(false));
      try {
        const results: SliceShown[] = [];
        for (const target of targets) {
          results.push(await moveViewport(cornerstoneViewportService.getCornerstoneViewport(target.viewportId), target, setWindow, metaData));
        }
        return results;
      } finally {
        // the new images' events are handled synchronously; two frames let any render pass before linking again
        await nextFrame();
        await nextFrame();
        paused.forEach((s) => s.setEnabled(true));
      }
    },
  };
}
