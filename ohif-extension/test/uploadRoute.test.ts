import { afterEach, describe, expect, it } from 'vitest';
import { ONCOFLOW_STOW_PATH, routeUploadsThroughOncoFlow, stowTarget } from '../src/uploadRoute';

const ORIGIN = 'http://127.0.0.1:8042';

describe('stowTarget', () => {
  it('sends a STOW-RS post to the DICOMweb plug-in to OncoFlow instead', () => {
    expect(stowTarget('POST', `${ORIGIN}/dicom-web/studies`, ORIGIN)).toBe(`${ORIGIN}${ONCOFLOW_STOW_PATH}`);
    expect(stowTarget('post', '/dicom-web/studies', ORIGIN)).toBe(`${ORIGIN}${ONCOFLOW_STOW_PATH}`);
  });

  it('leaves every other request alone', () => {
    const others: Array<[string, string]> = [
      ['GET', `${ORIGIN}/dicom-web/studies`], // a WADO/QIDO read
      ['POST', `${ORIGIN}/dicom-web/studies/1.2.3`], // STOW-RS to one study: refused by Orthanc's filter, not moved
      ['POST', `${ORIGIN}/dicom-web/studies?x=1`],
      ['POST', 'http://elsewhere.example.org/dicom-web/studies'], // another origin
      ['POST', `${ORIGIN}/oncoflow/patients/P/documents`],
      ['POST', 'not a url ::'],
    ];
    for (const [method, url] of others) {
      expect(stowTarget(method, url, ORIGIN)).toBe(url);
    }
  });
});

describe('routeUploadsThroughOncoFlow', () => {
  let undo: () => void = () => undefined;
  afterEach(() => undo());

  it('opens the viewer\'s STOW-RS requests on OncoFlow\'s route, once, and can be undone', () => {
    const opened: string[] = [];
    class FakeXhr {
      open(method: string, url: string | URL) {
        opened.push(`${method} ${String(url)}`);
      }
    }
    const win = { XMLHttpRequest: FakeXhr, location: { origin: ORIGIN } } as unknown as Window & typeof globalThis;
    undo = routeUploadsThroughOncoFlow(win);
    expect(routeUploadsThroughOncoFlow(win)()).toBeUndefined(); // a second call changes nothing
    new FakeXhr().open('POST', `${ORIGIN}/dicom-web/studies`);
    new FakeXhr().open('GET', `${ORIGIN}/dicom-web/studies/1.2/metadata`);
    undo();
    new FakeXhr().open('POST', `${ORIGIN}/dicom-web/studies`);
    expect(opened).toEqual([
      `POST ${ORIGIN}${ONCOFLOW_STOW_PATH}`,
      `GET ${ORIGIN}/dicom-web/studies/1.2/metadata`,
      `POST ${ORIGIN}/dicom-web/studies`,
    ]);
  });
});
