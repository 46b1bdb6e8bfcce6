import { describe, expect, it, vi } from 'vitest';
import { HANGING_PROTOCOL_ID, MODE_ID, OHIF, PANEL_ID } from '../src/ids';
import oncoflowMode, { buildModeInstance, extensionUrlNextTo, SOP_CLASS_HANDLERS } from '../src/mode';

/** The parts of OHIF 3.13.2's `@ohif/mode-basic` default export the mode relies on. */
function fakeBasicMode() {
  const modeInstance = {
    id: '@ohif/mode-basic',
    routeName: 'basic',
    hide: true,
    displayName: 'Non-Longitudinal Basic',
    toolbarSections: [{ $reference: 'cornerstone.toolbarSections' }],
    toolbarButtons: [{ $reference: 'cornerstone.toolbarButtons' }],
    modeCustomizations: 'basicModeCustomizations',
    initToolGroups: vi.fn(),
    onModeEnter: vi.fn(),
    onModeExit: vi.fn(),
    isValidMode(this: { nonModeModalities: string[] }, { modalities }: { modalities: string }) {
      return { valid: modalities.split('\\').some((m) => !this.nonModeModalities.includes(m)), description: '' };
    },
    routes: [{ path: 'basic' }],
    hangingProtocol: 'default',
  };
  return {
    id: '@ohif/mode-basic',
    modeInstance,
    modeFactory(this: { modeInstance: Record<string, unknown> }, { modeConfiguration }: { modeConfiguration: Record<string, unknown> }) {
      return { ...this.modeInstance, ...modeConfiguration };
    },
  };
}

describe('OncoFlow review mode', () => {
  const extensionUrl = 'http://pacs.example/ohif/oncoflow/oncoflow-extension.mjs';

  it('finds the extension next to the mode file', () => {
    expect(extensionUrlNextTo('http://pacs.example/ohif/oncoflow/oncoflow-mode.mjs')).toBe(extensionUrl);
  });

  it('extends the basic mode with OncoFlow’s route, layout, handlers and protocols', () => {
    const basic = fakeBasicMode();
    const mode = buildModeInstance(basic.modeInstance, extensionUrl);
    expect(mode).toMatchObject({ id: MODE_ID, routeName: 'oncoflow-review', displayName: 'OncoFlow review', hide: false });
    expect(mode.extensions).toEqual({
      '@ohif/extension-default': '^3.13.0',
      '@ohif/extension-cornerstone': '^3.13.0',
      '@ohif/extension-cornerstone-dicom-seg': '^3.13.0',
      '@ohif/extension-cornerstone-dicom-sr': '^3.13.0',
      '@ohif/extension-dicom-pdf': '^3.13.0',
      [extensionUrl]: '^0.1.0',
    });
    expect(mode.sopClassHandlers).toEqual([
      '@ohif/extension-cornerstone-dicom-seg.sopClassHandlerModule.dicom-seg',
      '@ohif/extension-default.sopClassHandlerModule.stack',
      '@ohif/extension-dicom-pdf.sopClassHandlerModule.dicom-pdf',
      '@ohif/extension-cornerstone-dicom-sr.sopClassHandlerModule.dicom-sr-3d',
      '@ohif/extension-cornerstone-dicom-sr.sopClassHandlerModule.dicom-sr',
    ]);
    expect(mode.hangingProtocol).toEqual([HANGING_PROTOCOL_ID, 'default']);
    // inherited from basic: toolbar, tool groups, lifecycle (called through OncoFlow's, below)
    expect(mode.initToolGroups).toBe(basic.modeInstance.initToolGroups);
    expect(mode.toolbarButtons).toEqual([{ $reference: 'cornerstone.toolbarButtons' }]);
  });

  it('turns OHIF’s "load the segmentation?" prompt off while the mode is entered and restores it on exit', () => {
    const basic = fakeBasicMode();
    const mode = buildModeInstance(basic.modeInstance, extensionUrl) as unknown as {
      onModeEnter: (args: unknown) => void;
      onModeExit: (args: unknown) => void;
    };
    const appConfig: Record<string, unknown> = { disableConfirmationPrompts: false };
    const other: Record<string, unknown> = {};
    const args = { appConfig, extensionManager: { appConfig: other }, servicesManager: {} };
    mode.onModeEnter(args);
    expect(basic.modeInstance.onModeEnter).toHaveBeenCalledWith(args);
    expect(appConfig.disableConfirmationPrompts).toBe(true);
    expect(other.disableConfirmationPrompts).toBe(true);
    mode.onModeExit(args);
    expect(basic.modeInstance.onModeExit).toHaveBeenCalledWith(args);
    expect(appConfig.disableConfirmationPrompts).toBe(false);
    expect('disableConfirmationPrompts' in other).toBe(false);
    // without the basic mode it still switches the prompt
    const bare = buildModeInstance(null, extensionUrl) as unknown as { onModeEnter: (args: unknown) => void };
    const config: Record<string, unknown> = {};
    bare.onModeEnter({ appConfig: config });
    expect(config.disableConfirmationPrompts).toBe(true);
  });

  it('lays out the study browser left and OncoFlow + segmentation + measurements right', () => {
    const mode = buildModeInstance(null, extensionUrl);
    const [route] = mode.routes as Array<{ path: string; layoutTemplate: () => { id: string; props: Record<string, unknown> } }>;
    expect(route?.path).toBe('oncoflow-review');
    const layout = route!.layoutTemplate();
    expect(layout.id).toBe(OHIF.layout);
    expect(layout.props.leftPanels).toEqual(['@ohif/extension-default.panelModule.seriesList']);
    expect(layout.props.rightPanels).toEqual([
      PANEL_ID,
      '@ohif/extension-cornerstone.panelModule.panelSegmentation',
      '@ohif/extension-cornerstone.panelModule.panelMeasurement',
    ]);
    expect(PANEL_ID).toBe('@oncoflow/extension.panelModule.oncoflow');
    expect(layout.props.rightPanelClosed).toBe(false);
    const viewports = layout.props.viewports as Array<{ namespace: string; displaySetsToDisplay: string[] }>;
    expect(viewports.flatMap((v) => v.displaySetsToDisplay).sort()).toEqual([...SOP_CLASS_HANDLERS].sort());
    // a fresh copy each time (OHIF's route deletes the panel lists from it)
    expect(route!.layoutTemplate()).not.toBe(layout);
  });

  it('accepts image studies and refuses SEG/SR-only ones, with and without the basic rule', () => {
    for (const base of [fakeBasicMode().modeInstance, null]) {
      const mode = buildModeInstance(base, extensionUrl) as unknown as { isValidMode: (a: { modalities: string }) => { valid: boolean } };
      expect(mode.isValidMode({ modalities: 'MR\\SEG\\SR' }).valid).toBe(true);
      expect(mode.isValidMode({ modalities: 'SEG\\SR' }).valid).toBe(false);
    }
  });

  it('modeFactory loads @ohif/mode-basic through OHIF and applies modesConfiguration with its factory', async () => {
    const basic = fakeBasicMode();
    const loadModules = vi.fn(async (names: string[]) => names.map(() => basic));
    const instance = await oncoflowMode.modeFactory({ loadModules, modeConfiguration: {} });
    expect(loadModules).toHaveBeenCalledWith(['@ohif/mode-basic']);
    expect(instance.routeName).toBe('oncoflow-review');
    expect(Object.keys(instance.extensions as object).at(-1)).toMatch(/oncoflow-extension\.mjs$/);
    const configured = await oncoflowMode.modeFactory({ loadModules, modeConfiguration: { displayName: 'Tumour board' } });
    expect(configured).toMatchObject({ displayName: 'Tumour board', routeName: 'oncoflow-review' });
  });

  it('still builds a mode when the basic mode cannot be loaded', async () => {
    const error = vi.spyOn(console, 'error').mockImplementation(() => undefined);
    const instance = await oncoflowMode.modeFactory({ loadModules: async () => Promise.reject(new Error('no chunk')) });
    expect(instance.routeName).toBe('oncoflow-review');
    expect(error).toHaveBeenCalled();
    error.mockRestore();
  });
});
