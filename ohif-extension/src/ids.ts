/**
 * Identifiers shared by the OncoFlow extension, its mode and OHIF.
 *
 * OHIF addresses an extension's modules as `${extensionId}.${moduleType}.${name}`
 * (ExtensionManager.processExtensionModule in OHIF 3.13), so the panel a layout lists
 * is `@oncoflow/extension.panelModule.oncoflow`.
 */

export const EXTENSION_ID = '@oncoflow/extension';
export const PANEL_NAME = 'oncoflow';
export const PANEL_ID = `${EXTENSION_ID}.panelModule.${PANEL_NAME}`;

export const MODE_ID = 'oncoflow-review';
export const MODE_DISPLAY_NAME = 'OncoFlow review';

/** The hanging protocol OncoFlow registers (baseline | follow-up, linked scrolling). */
export const HANGING_PROTOCOL_ID = '@oncoflow/hpBaselineFollowUp';

/** The file names `npm run build` writes; the mode finds the extension next to itself. */
export const EXTENSION_FILE = 'oncoflow-extension.mjs';

/** Ids of the bundled OHIF 3.13.2 modules the mode uses (checked in the @ohif/app 3.13.2 dist). */
export const OHIF = {
  basicMode: '@ohif/mode-basic',
  extensions: {
    default: '@ohif/extension-default',
    cornerstone: '@ohif/extension-cornerstone',
    dicomSeg: '@ohif/extension-cornerstone-dicom-seg',
    dicomSr: '@ohif/extension-cornerstone-dicom-sr',
    dicomPdf: '@ohif/extension-dicom-pdf',
  },
  layout: '@ohif/extension-default.layoutTemplateModule.viewerLayout',
  studyBrowserPanel: '@ohif/extension-default.panelModule.seriesList',
  segmentationPanel: '@ohif/extension-cornerstone.panelModule.panelSegmentation',
  measurementPanel: '@ohif/extension-cornerstone.panelModule.panelMeasurement',
  sopClassHandlers: {
    stack: '@ohif/extension-default.sopClassHandlerModule.stack',
    seg: '@ohif/extension-cornerstone-dicom-seg.sopClassHandlerModule.dicom-seg',
    sr: '@ohif/extension-cornerstone-dicom-sr.sopClassHandlerModule.dicom-sr',
    sr3d: '@ohif/extension-cornerstone-dicom-sr.sopClassHandlerModule.dicom-sr-3d',
    pdf: '@ohif/extension-dicom-pdf.sopClassHandlerModule.dicom-pdf',
  },
  viewports: {
    cornerstone: '@ohif/extension-cornerstone.viewportModule.cornerstone',
    seg: '@ohif/extension-cornerstone-dicom-seg.viewportModule.dicom-seg',
    sr: '@ohif/extension-cornerstone-dicom-sr.viewportModule.dicom-sr',
    pdf: '@ohif/extension-dicom-pdf.viewportModule.dicom-pdf',
  },
  cornerstoneCommonUtility: '@ohif/extension-cornerstone.utilityModule.common',
  defaultHangingProtocol: 'default',
} as const;
