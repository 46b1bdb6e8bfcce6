/**
 * The OHIF 3.13 boundary: structural types for the few OHIF objects OncoFlow touches.
 *
 * OHIF publishes no types a run-time module can import, so these describe only the members
 * we call, as found in the @ohif/app 3.13.2 dist. Objects from OHIF enter as `unknown` (or
 * as the loosely typed `OhifModule` records below) and are narrowed here; nothing else in
 * the code base sees OHIF's shapes.
 */

export interface Subscription {
  unsubscribe(): void;
}

export interface PubSubService {
  EVENTS: Record<string, string>;
  subscribe(event: string, callback: (payload: unknown) => void): Subscription;
}

export interface OhifInstance {
  PatientID?: string;
  SOPInstanceUID?: string;
  /** An image's cornerstone imageId (display sets' `images`). */
  imageId?: string;
  StudyInstanceUID?: string;
  SeriesInstanceUID?: string;
}

export interface OhifDisplaySet {
  displaySetInstanceUID: string;
  StudyInstanceUID: string;
  SeriesInstanceUID: string;
  Modality?: string;
  /** A SEG display set's one instance. */
  SOPInstanceUID?: string;
  /** A SEG's image display set, once OHIF has found it (null before). */
  referencedDisplaySetInstanceUID?: string | null;
  instance?: OhifInstance;
  instances?: OhifInstance[];
  images?: OhifInstance[];
}

export interface DisplaySetService extends PubSubService {
  getActiveDisplaySets(): OhifDisplaySet[];
  getDisplaySetByUID(displaySetInstanceUID: string): OhifDisplaySet | undefined;
}

export interface GridViewport {
  viewportId: string;
  displaySetInstanceUIDs?: string[];
}

export interface ViewportGridState {
  activeViewportId?: string | null;
  viewports: Map<string, GridViewport>;
}

export interface ViewportGridService extends PubSubService {
  getActiveViewportId(): string | null | undefined;
  getState(): ViewportGridState;
}

/** A cornerstone3D image (`viewport.getCornerstoneImage()`) as far as we read it. */
export interface CornerstoneImage {
  getPixelData?(): ArrayLike<number>;
  voxelManager?: { getScalarData?(): ArrayLike<number> };
  slope?: number;
  intercept?: number;
  /** Set by the image loader: `scaled` when the pixel data already holds modality values. */
  preScale?: { scaled?: boolean };
}

/** A cornerstone3D viewport (Stack or Volume) as far as we use it; the optional members are a stack viewport's. */
export interface CornerstoneViewport {
  id: string;
  element: HTMLDivElement;
  canvasToWorld(canvasPoint: [number, number]): ArrayLike<number>;
  getImageIds?(): string[];
  getCurrentImageId?(): string | undefined;
  getCurrentImageIdIndex?(): number;
  setImageIdIndex?(index: number): Promise<unknown>;
  jumpToWorld?(worldPos: [number, number, number]): boolean;
  getCornerstoneImage?(): CornerstoneImage | undefined;
  setProperties?(properties: { voiRange?: { lower: number; upper: number } }): void;
  render?(): void;
}

/** A cornerstone3D tools synchronizer. */
export interface Synchronizer {
  id: string;
  setEnabled(enabled: boolean): void;
}

export interface SyncGroupService {
  getSynchronizersForViewport(viewportId: string): Synchronizer[];
  getSynchronizerType?(synchronizer: Synchronizer): string | undefined;
}

export interface SegmentationService {
  getSegmentationRepresentations(viewportId: string, specifier?: { segmentationId?: string }): unknown[];
}

/** cornerstone3D's `metaData` (imagePlaneModule, voiLutModule). */
export interface CornerstoneMetaData {
  get(type: string, imageId: string): unknown;
}

export interface CornerstoneViewportService {
  getCornerstoneViewport(viewportId: string): CornerstoneViewport | null | undefined;
}

export interface HangingProtocolService {
  getViewportsRequireUpdate(viewportId: string, displaySetInstanceUID: string, isHangingProtocolLayout?: boolean): unknown[];
}

export interface UserAuthenticationService {
  getAuthorizationHeader?(): Record<string, string> | undefined;
}

export interface OhifServices {
  displaySetService: DisplaySetService;
  viewportGridService: ViewportGridService;
  cornerstoneViewportService?: CornerstoneViewportService;
  hangingProtocolService?: HangingProtocolService;
  userAuthenticationService?: UserAuthenticationService;
  syncGroupService?: SyncGroupService;
  segmentationService?: SegmentationService;
}

export interface ServicesManager {
  services: OhifServices;
}

export interface CommandsManager {
  run(command: string, options?: Record<string, unknown>): unknown;
}

export interface QidoStudy {
  studyInstanceUid?: string;
  /** OHIF's name for PatientID in QIDO results. */
  mrn?: string;
}

/** OHIF's DICOMweb data source (extensions/default DicomWebDataSource). */
export interface OhifDataSource {
  getConfig?(): { name?: string } | undefined;
  deleteStudyMetadataPromise?(key: string): void;
  retrieve: {
    series: {
      metadata(args: { StudyInstanceUID: string; filters?: { seriesInstanceUID?: string[] } }): Promise<unknown>;
    };
  };
  query?: {
    studies?: {
      search(args: { studyInstanceUid: string }): Promise<QidoStudy[]>;
    };
  };
}

export interface ExtensionManager {
  getActiveDataSource(): OhifDataSource[];
  getModuleEntry(id: string): unknown;
}

/** cornerstone3D's spatial registration provider (`utilities.spatialRegistrationMetadataProvider`). */
export interface SpatialRegistrationProvider {
  add(viewportIds: [string, string], matrix: Float32Array): void;
}

/** What OHIF passes to an extension's `getXModule` functions. */
export interface ExtensionModuleArgs {
  servicesManager: ServicesManager;
  commandsManager: CommandsManager;
  extensionManager: ExtensionManager;
  /** OHIF's `window.config`. */
  appConfig?: { oncoflow?: OncoFlowAppConfig };
}

/**
 * Optional `oncoflow` block of OHIF's app-config (`window.config.oncoflow`). A URL-loaded
 * extension cannot take OHIF's `[extension, configuration]` pair, so settings live here.
 */
export interface OncoFlowAppConfig {
  /** Where OncoFlow's routes live; '' (default) is the viewer's own origin. */
  apiBaseUrl?: string;
}

/** A bundled mode or its instance: an open record that OncoFlow copies and extends. */
export type OhifModule = Record<string, unknown>;

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null;
}
