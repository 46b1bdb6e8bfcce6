/** @type {AppTypes.Config} */
// OncoFlow's OHIF configuration, served at /ohif/app-config.js by the Orthanc plugin
// (oncoflow/api/viewer_files.py) in place of the package's own.
//
// OHIF runs at /ohif/ on Orthanc's origin, so Orthanc's DICOMweb needs no CORS. Studies are
// searched (QIDO-RS) through OncoFlow's proxy /oncoflow/dicom-web, which decodes the query and splits
// OHIF's `includefield=00081030%2C00080060` (DICOMweb 1.7 reads query values still percent-encoded and
// ignores that list: a study list without descriptions); images and metadata (WADO-RS) come straight
// from Orthanc's /dicom-web. Uploads (STOW-RS) go through OncoFlow's /oncoflow/dicom-web/studies.
//
// Sign-in (OIDC): the plugin puts one line before this file, `window.oncoflowAuth = {"authority":
// "<Keycloak>/realms/oncoflow", "clientId": "ohif"};` when OncoFlow's auth is on, `window.oncoflowAuth = null;`
// when it is off. With an object, OHIF 3.13.2 signs in with the authorization code flow + PKCE
// (oidc-client-ts, chosen by `response_type: 'code'`), every route of the viewer needs a user, and its
// DICOMweb requests (and the OncoFlow panel's) carry `Authorization: Bearer <access token>`. Without one
// there is no `oidc` key at all (OHIF mounts its sign-in routes whenever the key is present).
(function () {
  const origin = window.location.origin;
  const viewerRoot = `${origin}/ohif`; // = routerBasename on this origin
  const auth = window.oncoflowAuth;
  const oidc =
    auth && typeof auth === 'object' && auth.authority && auth.clientId
      ? [
          {
            authority: auth.authority,
            client_id: auth.clientId,
            // OHIF's /callback route (CallbackPage) under routerBasename; OHIF matches it by this URL's
            // path less '/ohif'. Absolute URLs are kept as they are (relative ones are appended to
            // origin + routerBasename).
            redirect_uri: `${viewerRoot}/callback`,
            // The viewer's root after sign-out (Keycloak checks it against the client's post-logout URIs).
            post_logout_redirect_uri: `${viewerRoot}/`,
            // Given absolutely: the re-rooted bundle's default ('/ohif/silent-refresh.html') would be
            // appended to origin + '/ohif' once more. Renewal itself uses Keycloak's refresh token
            // (oidc-client-ts signinSilent prefers it), so this page is only a fallback.
            silent_redirect_uri: `${viewerRoot}/silent-refresh.html`,
            response_type: 'code',
            scope: 'openid',
            automaticSilentRenew: true,
            revokeAccessTokenOnSignout: true,
          },
        ]
      : null;
  if (auth && !oidc) {
    console.error('OncoFlow: window.oncoflowAuth has no authority/clientId; the viewer starts without sign-in');
  }
  // OHIF imports every string entry of `extensions` / `modes` with import(url), all at once: one module
  // that fails to load (e.g. not built yet: the route answers 404) leaves a blank page. Any other entry is
  // awaited as it is, so each OncoFlow module is given as a thenable that imports its URL when OHIF loads
  // its modules, and resolves to null when that fails: OHIF then starts without it (a null mode is
  // skipped, a null extension is logged and skipped) and the console names the missing module.
  const optionalModule = (url) => ({
    url,
    then(resolve) {
      import(url).then(
        (module) => resolve(module.default),
        (error) => {
          console.error(`OncoFlow: ${url} not loaded (${error.message}); OHIF starts without it`);
          resolve(null);
        },
      );
    },
  });
  window.config = {
    name: 'oncoflow',
    routerBasename: '/ohif',
    ...(oidc ? { oidc } : {}),
    // The OncoFlow extension and mode (ohif-extension/, built into ohif-extension/dist/)
    extensions: [optionalModule('/ohif/oncoflow/oncoflow-extension.mjs')],
    modes: [optionalModule('/ohif/oncoflow/oncoflow-mode.mjs')],
    customizationService: {},
    showStudyList: true,
    investigationalUseDialog: { option: 'never' },
    maxNumberOfWebWorkers: 2,
    showWarningMessageForCrossOrigin: false,
    showCPUFallbackMessage: true,
    showLoadingIndicator: true,
    strictZSpacingForVolumeViewport: true,
    groupEnabledModesFirst: true,
    maxNumRequests: { interaction: 100, thumbnail: 10, prefetch: 10 },
    showErrorDetails: 'always',
    defaultDataSourceName: 'orthanc',
    dataSources: [
      {
        namespace: '@ohif/extension-default.dataSourcesModule.dicomweb',
        sourceName: 'orthanc',
        configuration: {
          friendlyName: 'OncoFlow Orthanc',
          name: 'orthanc',
          qidoRoot: `${origin}/oncoflow/dicom-web`,
          wadoRoot: `${origin}/dicom-web`,
          wadoUriRoot: `${origin}/wado`,
          qidoSupportsIncludeField: true,
          supportsReject: false,
          // the study list's Upload (STOW-RS): the OncoFlow extension sends it to /oncoflow/dicom-web/studies,
          // where each file is checked (upload guard, the user's assigned patients) before Orthanc parses it
          dicomUploadEnabled: true,
          imageRendering: 'wadors',
          thumbnailRendering: 'wadors',
          enableStudyLazyLoad: true,
          supportsFuzzyMatching: false,
          supportsWildcard: true,
          omitQuotationForMultipartRequest: true,
          bulkDataURI: { enabled: true },
        },
      },
    ],
  };
})();
