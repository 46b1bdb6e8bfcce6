/// <reference types="node" />
// app-config.js as the plugin serves it: one line that sets window.oncoflowAuth, then the file unchanged.
import { readFileSync } from 'node:fs';
import { describe, expect, it, vi } from 'vitest';

const APP_CONFIG = readFileSync(new URL('../app-config.js', import.meta.url), 'utf8');
const ORIGIN = 'http://127.0.0.1:18042';
const AUTHORITY = 'http://127.0.0.1:18080/realms/oncoflow';

interface OidcClient {
  authority: string;
  client_id: string;
  redirect_uri: string;
  post_logout_redirect_uri: string;
  silent_redirect_uri: string;
  response_type: string;
  scope: string;
}

interface ServedConfig {
  routerBasename: string;
  oidc?: OidcClient[];
  dataSources: Array<{ configuration: { qidoRoot: string; wadoRoot: string } }>;
}

/** Runs the served file (`prefix` + app-config.js) in a window of ORIGIN; answers window.config. */
function servedConfig(prefix: string): ServedConfig {
  const window: { location: { origin: string }; config?: ServedConfig; oncoflowAuth?: unknown } = { location: { origin: ORIGIN } };
  new Function('window', `${prefix}\n${APP_CONFIG}`)(window);
  if (!window.config) {
    throw new Error('app-config.js set no window.config');
  }
  return window.config;
}

/** OHIF 3.13.2's `_makeAbsoluteIfNecessary` + route path (utils/OpenIdConnectRoutes.tsx in app.bundle.*.js). */
function ohifRedirectRoute(redirectUri: string, routerBasename: string): string {
  const absolute = /https?:\/\//.test(redirectUri) ? redirectUri : `${ORIGIN}${routerBasename.replace(/\/$/, '')}${redirectUri}`;
  return new URL(absolute).pathname.replace(routerBasename !== '/' ? routerBasename : '', '');
}

describe('app-config.js', () => {
  it('has no oidc key when auth is off (window.oncoflowAuth = null)', () => {
    const config = servedConfig('window.oncoflowAuth = null;');
    expect(config).not.toHaveProperty('oidc');
    expect(config.routerBasename).toBe('/ohif');
    expect(config.dataSources[0]?.configuration.qidoRoot).toBe(`${ORIGIN}/oncoflow/dicom-web`);
    expect(servedConfig('')).not.toHaveProperty('oidc'); // a server that sets nothing
  });

  it('signs in with Keycloak (code + PKCE) when auth is on', () => {
    const config = servedConfig(`window.oncoflowAuth = {"authority": "${AUTHORITY}", "clientId": "ohif"};`);
    expect(config.oidc).toEqual([
      {
        authority: AUTHORITY,
        client_id: 'ohif',
        redirect_uri: `${ORIGIN}/ohif/callback`,
        post_logout_redirect_uri: `${ORIGIN}/ohif/`,
        silent_redirect_uri: `${ORIGIN}/ohif/silent-refresh.html`,
        response_type: 'code',
        scope: 'openid',
        automaticSilentRenew: true,
        revokeAccessTokenOnSignout: true,
      },
    ]);
    // OHIF routes the callback at /callback under routerBasename: the page /ohif/callback
    expect(ohifRedirectRoute(config.oidc![0]!.redirect_uri, config.routerBasename)).toBe('/callback');
    // the URIs fall under the client's redirect URIs http://127.0.0.1:<port>/ohif/*
    for (const uri of [config.oidc![0]!.redirect_uri, config.oidc![0]!.post_logout_redirect_uri]) {
      expect(uri.startsWith(`${ORIGIN}/ohif/`)).toBe(true);
    }
  });

  it('starts without sign-in (and says so) when the auth object is incomplete', () => {
    const error = vi.spyOn(console, 'error').mockImplementation(() => undefined);
    expect(servedConfig('window.oncoflowAuth = {"clientId": "ohif"};')).not.toHaveProperty('oidc');
    expect(error).toHaveBeenCalledWith(expect.stringContaining('window.oncoflowAuth'));
    error.mockRestore();
  });
});
