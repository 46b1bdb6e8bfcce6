/**
 * The "OncoFlow review" mode (built to `dist/oncoflow-mode.mjs`, loaded by OHIF with
 * `import(url)` from `window.config.modes`).
 *
 * OHIF 3.13 modes are `{ id, modeFactory, … }` modules: `appInit` calls
 * `modeFactory({ modeConfiguration, loadModules })` and keeps the instance it returns. Like
 * OHIF's own longitudinal mode, this one starts from the bundled basic mode's instance
 * (`@ohif/mode-basic`, fetched with `loadModules`), so it inherits its tool groups, toolbar,
 * lifecycle hooks and `isValidMode`, and replaces the route, layout, SOP class handlers,
 * hanging protocols and extension dependencies.
 *
 * The extension dependencies name OncoFlow's extension by its URL, next to this file: OHIF
 * imports every key of `extensions` with `import()` before entering the mode and registers
 * it unless an extension of the same id is registered already, so the mode works whether or
 * not app-config also lists the extension.
 */

import { EXTENSION_FILE, HANGING_PROTOCOL_ID, MODE_DISPLAY_NAME, MODE_ID, OHIF, PANEL_ID } from './ids';
import { isRecord, type OhifModule } from './ohif/types';

/** Studies made only of these modalities are not opened in this mode (OHIF's basic rule). */
export const NON_IMAGE_MODALITIES = ['SEG', 'RTSTRUCT', 'RTPLAN', 'PR', 'SR', 'DOC', 'REG'];

export const EXTENSION_VERSION_RANGE = '^0.1.0';
export const OHIF_VERSION_RANGE = '^3.13.0';

/** The URL of `oncoflow-extension.mjs` next to this module. */
export function extensionUrlNextTo(moduleUrl: string): string {
  return new URL(`./${EXTENSION_FILE}`, moduleUrl).href;
}

export function extensionDependencies(extensionUrl: string): Record<string, string> {
  return {
    [OHIF.extensions.default]: OHIF_VERSION_RANGE,
    [OHIF.extensions.cornerstone]: OHIF_VERSION_RANGE,
    [OHIF.extensions.dicomSeg]: OHIF_VERSION_RANGE,
    [OHIF.extensions.dicomSr]: OHIF_VERSION_RANGE,
    [OHIF.extensions.dicomPdf]: OHIF_VERSION_RANGE,
    [extensionUrl]: EXTENSION_VERSION_RANGE,
  };
}

/** Order matters: SEG before the generic image handler, 3D SR before SR (as in OHIF's basic mode). */
export const SOP_CLASS_HANDLERS = [
  OHIF.sopClassHandlers.seg,
  OHIF.sopClassHandlers.stack,
  OHIF.sopClassHandlers.pdf,
  OHIF.sopClassHandlers.sr3d,
  OHIF.sopClassHandlers.sr,
];

export const layoutInstance = {
  id: OHIF.layout,
  props: {
    leftPanels: [OHIF.studyBrowserPanel],
    leftPanelResizable: true,
    rightPanels: [PANEL_ID, OHIF.segmentationPanel, OHIF.measurementPanel],
    rightPanelClosed: false,
    rightPanelResizable: true,
    viewports: [
      { namespace: OHIF.viewports.cornerstone, displaySetsToDisplay: [OHIF.sopClassHandlers.stack] },
      { namespace: OHIF.viewports.sr, displaySetsToDisplay: [OHIF.sopClassHandlers.sr, OHIF.sopClassHandlers.sr3d] },
      { namespace: OHIF.viewports.pdf, displaySetsToDisplay: [OHIF.sopClassHandlers.pdf] },
      { namespace: OHIF.viewports.seg, displaySetsToDisplay: [OHIF.sopClassHandlers.seg] },
    ],
  },
};

type LayoutInstance = typeof layoutInstance;

export const route = {
  path: MODE_ID,
  layoutInstance,
  /** OHIF calls `route.layoutTemplate(...)`: a fresh copy each time (OHIF's route mutates it). */
  layoutTemplate(this: { layoutInstance: LayoutInstance }): LayoutInstance {
    return JSON.parse(JSON.stringify(this.layoutInstance)) as LayoutInstance;
  },
};

interface ValidModeArgs {
  modalities: string;
}

/** Fallback when the basic mode's rule is missing: any modality that is not a non-image one. */
function isValidModeFallback({ modalities }: ValidModeArgs): { valid: boolean; description: string } {
  const list = modalities.split('\\').filter(Boolean);
  return {
    valid: list.some((m) => !NON_IMAGE_MODALITIES.includes(m)),
    description: `OncoFlow review needs an image series (not only ${NON_IMAGE_MODALITIES.join(', ')})`,
  };
}

/**
 * OHIF's switch for its "load this segmentation?" prompt (cornerstone extension's
 * `promptHydrationDialog`, asked by the SEG and RTSTRUCT viewports): `appConfig.disableConfirmationPrompts`.
 * The review mode turns it on while it is entered (a SEG put in a viewport, e.g. a refined one,
 * loads at once) and gives back the site's value on exit, as OHIF's own US annotation mode does.
 */
export const NO_PROMPT_SETTING = 'disableConfirmationPrompts';

type Lifecycle = (this: unknown, args?: unknown) => unknown;

/** The app configs a lifecycle call can reach: its `appConfig` and the extension manager's (which `promptHydrationDialog` reads). */
function appConfigsOf(args: unknown): Record<string, unknown>[] {
  if (!isRecord(args)) {
    return [];
  }
  const found: Record<string, unknown>[] = [];
  const extensionManager = args.extensionManager;
  for (const config of [args.appConfig, isRecord(extensionManager) ? extensionManager.appConfig : undefined]) {
    if (isRecord(config) && !found.includes(config)) {
      found.push(config);
    }
  }
  return found;
}

/** `onModeEnter` / `onModeExit` around the basic mode's, switching OHIF's hydration prompt off while in the mode. */
export function withoutHydrationPrompts(base: OhifModule): { onModeEnter: Lifecycle; onModeExit: Lifecycle } {
  const saved = new Map<Record<string, unknown>, unknown>();
  const baseEnter = typeof base.onModeEnter === 'function' ? (base.onModeEnter as Lifecycle) : null;
  const baseExit = typeof base.onModeExit === 'function' ? (base.onModeExit as Lifecycle) : null;
  return {
    onModeEnter(this: unknown, args?: unknown) {
      for (const config of appConfigsOf(args)) {
        if (!saved.has(config)) {
          saved.set(config, config[NO_PROMPT_SETTING]);
        }
        config[NO_PROMPT_SETTING] = true;
      }
      return baseEnter?.call(this, args);
    },
    onModeExit(this: unknown, args?: unknown) {
      try {
        return baseExit?.call(this, args);
      } finally {
        for (const [config, value] of saved) {
          if (value === undefined) {
            delete config[NO_PROMPT_SETTING];
          } else {
            config[NO_PROMPT_SETTING] = value;
          }
        }
        saved.clear();
      }
    },
  };
}

/** The mode instance: the basic mode's instance (when given) with OncoFlow's parts. */
export function buildModeInstance(basicInstance: OhifModule | null, extensionUrl: string): OhifModule {
  const base: OhifModule = basicInstance ?? {};
  return {
    ...base,
    ...withoutHydrationPrompts(base),
    id: MODE_ID,
    routeName: MODE_ID,
    displayName: MODE_DISPLAY_NAME,
    hide: false,
    extensions: extensionDependencies(extensionUrl),
    sopClassHandlers: SOP_CLASS_HANDLERS,
    // our protocol when two studies are open, else OHIF's default one
    hangingProtocol: [HANGING_PROTOCOL_ID, OHIF.defaultHangingProtocol],
    routes: [route],
    nonModeModalities: NON_IMAGE_MODALITIES,
    isValidMode: typeof base.isValidMode === 'function' ? base.isValidMode : isValidModeFallback,
  };
}

type LoadModules = (names: string[]) => Promise<unknown[]>;

interface ModeFactoryArgs {
  modeConfiguration?: unknown;
  loadModules?: LoadModules;
}

/** The basic mode module from OHIF's bundle, or null (then the mode has no toolbar of its own). */
async function loadBasicMode(loadModules: LoadModules | undefined): Promise<OhifModule | null> {
  if (!loadModules) {
    return null;
  }
  try {
    const [basic] = await loadModules([OHIF.basicMode]);
    return isRecord(basic) ? basic : null;
  } catch (error) {
    console.error(`OncoFlow review: cannot load ${OHIF.basicMode}`, error);
    return null;
  }
}

const oncoflowMode = {
  id: MODE_ID,
  async modeFactory({ modeConfiguration, loadModules }: ModeFactoryArgs = {}): Promise<OhifModule> {
    const basic = await loadBasicMode(loadModules);
    const basicInstance = basic && isRecord(basic.modeInstance) ? basic.modeInstance : null;
    const instance = buildModeInstance(basicInstance, extensionUrlNextTo(import.meta.url));
    // OHIF's basic modeFactory applies `modesConfiguration[id]` with immutability-helper.
    if (basic && typeof basic.modeFactory === 'function' && modeConfiguration && Object.keys(modeConfiguration).length) {
      return (basic.modeFactory as (this: unknown, args: { modeConfiguration: unknown }) => OhifModule).call(
        { modeInstance: instance },
        { modeConfiguration },
      );
    }
    return instance;
  },
};

export default oncoflowMode;
