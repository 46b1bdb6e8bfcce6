/**
 * The OncoFlow OHIF extension (built to `dist/oncoflow-extension.mjs`, loaded by OHIF with
 * `import(url)` from `window.config.extensions` or from the mode's dependencies).
 *
 * Modules: the `oncoflow` panel (`@oncoflow/extension.panelModule.oncoflow`) and the
 * baseline | follow-up hanging protocol. At registration it also sends the study list's uploads (STOW-RS)
 * through OncoFlow's checks (`uploadRoute.ts`).
 */

import { createElement } from 'react';
import { createOncoFlowApi } from './api';
import { OncoFlowPanel } from './components/OncoFlowPanel';
import { baselineFollowUpProtocol } from './hangingProtocol';
import { EXTENSION_ID, HANGING_PROTOCOL_ID, PANEL_NAME } from './ids';
import { createIslandComponent } from './island';
import { createOhifViewerBridge } from './ohif/ohifViewerBridge';
import type { ExtensionModuleArgs } from './ohif/types';
import { injectPanelStyles } from './styles';
import { routeUploadsThroughOncoFlow } from './uploadRoute';

function getPanelModule({ servicesManager, commandsManager, extensionManager, appConfig }: ExtensionModuleArgs) {
  const api = createOncoFlowApi({
    baseUrl: appConfig?.oncoflow?.apiBaseUrl ?? '',
    // the viewer's bearer token when it signs in (OIDC), like its DICOMweb requests
    headers: () => servicesManager.services.userAuthenticationService?.getAuthorizationHeader?.(),
  });
  const viewer = createOhifViewerBridge({ servicesManager, extensionManager, commandsManager });
  const PanelHost = createIslandComponent(() => createElement(OncoFlowPanel, { api, viewer }), {
    displayName: 'OncoFlowPanelHost',
  });
  return [
    {
      name: PANEL_NAME,
      iconName: 'tab-patient-info',
      iconLabel: 'OncoFlow',
      label: 'OncoFlow',
      component: PanelHost,
    },
  ];
}

function getHangingProtocolModule() {
  return [{ name: HANGING_PROTOCOL_ID, protocol: baselineFollowUpProtocol }];
}

const oncoflowExtension = {
  id: EXTENSION_ID,
  preRegistration() {
    injectPanelStyles();
    routeUploadsThroughOncoFlow(window);
  },
  getPanelModule,
  getHangingProtocolModule,
};

export default oncoflowExtension;
