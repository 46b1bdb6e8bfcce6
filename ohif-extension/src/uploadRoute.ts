/**
 * The viewer's uploads (the study list's "Upload", STOW-RS) through OncoFlow's checks.
 *
 * OHIF 3.13.2 posts each uploaded file to `${wadoRoot}/studies`, which is Orthanc's DICOMweb plug-in
 * (`/dicom-web/studies`): it has no setting for another STOW-RS root, and its DICOMweb client sends the request
 * with XMLHttpRequest. OncoFlow refuses that route to every caller (the plug-in would parse each file before any
 * check) and takes uploads at `/oncoflow/dicom-web/studies`, where each instance passes the upload guard and the
 * caller's patient assignments first. This module points the viewer's STOW-RS requests there: a POST whose URL is
 * exactly `<origin>/dicom-web/studies` is opened on `<origin>/oncoflow/dicom-web/studies`; nothing else changes.
 */

export const DICOMWEB_STOW_PATH = '/dicom-web/studies';
export const ONCOFLOW_STOW_PATH = '/oncoflow/dicom-web/studies';

const PATCHED = Symbol.for('oncoflow.stowRoute');

type Open = XMLHttpRequest['open'];

/** The URL a viewer request goes to: OncoFlow's STOW-RS route for a POST to the DICOMweb plug-in's. */
export function stowTarget(method: string, url: string | URL, origin: string): string | URL {
  if (method.toUpperCase() !== 'POST') return url;
  let parsed: URL;
  try {
    parsed = new URL(String(url), origin);
  } catch {
    return url;
  }
  if (parsed.origin !== origin || parsed.pathname !== DICOMWEB_STOW_PATH || parsed.search) return url;
  return `${origin}${ONCOFLOW_STOW_PATH}`;
}

/** Point `win`'s XMLHttpRequest STOW-RS posts at OncoFlow's route (once; returns how to undo it). */
export function routeUploadsThroughOncoFlow(win: Window & typeof globalThis): () => void {
  const prototype = win.XMLHttpRequest.prototype as XMLHttpRequest & { [PATCHED]?: Open };
  if (prototype[PATCHED]) return () => undefined;
  const original: Open = prototype.open;
  const origin = win.location.origin;
  prototype[PATCHED] = original;
  prototype.open = function open(this: XMLHttpRequest, method: string, url: string | URL, ...rest: unknown[]) {
    return (original as (...args: unknown[]) => void).call(this, method, stowTarget(method, url, origin), ...rest);
  } as Open;
  return () => {
    prototype.open = original;
    delete prototype[PATCHED];
  };
}
