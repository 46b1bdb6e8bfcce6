// @vitest-environment jsdom
import { act } from 'react';
import { createRoot, type Root } from 'react-dom/client';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createOncoFlowApi, type FetchFunction } from '../src/api';
import { OBJECT_URL_GRACE_MS, ReportLink, type PdfOpener } from '../src/components/ReportLink';
import type { ReportView } from '../src/panelModel';

(globalThis as { IS_REACT_ACT_ENVIRONMENT?: boolean }).IS_REACT_ACT_ENVIRONMENT = true;

const REPORT_UID = '1.2.826.0.1.3680043.8.498.4002';
const PDF_URL = `/oncoflow/reports/${REPORT_UID}.pdf`;
const PDF_BYTES = '%PDF-1.7\n%signed by OncoFlow\n';
const report: ReportView = { sopInstanceUid: REPORT_UID, error: null };

interface FakeTab {
  closed: boolean;
  location: { href: string };
  close(): void;
}

interface FakeOpener extends PdfOpener {
  tabs: FakeTab[];
  blobs: Blob[];
  revoked: string[];
  downloads: Array<[string, string]>;
  blockTabs: boolean;
}

function fakeOpener(): FakeOpener {
  const opener: FakeOpener = {
    tabs: [],
    blobs: [],
    revoked: [],
    downloads: [],
    blockTabs: false,
    openTab() {
      if (opener.blockTabs) {
        return null;
      }
      const tab: FakeTab = { closed: false, location: { href: 'about:blank' }, close: () => void (tab.closed = true) };
      opener.tabs.push(tab);
      return tab as unknown as Window;
    },
    createObjectUrl(blob) {
      opener.blobs.push(blob);
      return `blob:http://localhost/pdf-${opener.blobs.length}`;
    },
    revokeObjectUrl: (url) => void opener.revoked.push(url),
    download: (url, name) => void opener.downloads.push([url, name]),
  };
  return opener;
}

/** The report route: a PDF for a request with the expected bearer token, 403 otherwise (as Orthanc will). */
function reportRoute(token: string): ReturnType<typeof vi.fn<FetchFunction>> {
  return vi.fn<FetchFunction>(async (url, init) => {
    const headers = (init?.headers ?? {}) as Record<string, string>;
    if (url !== PDF_URL || headers.Authorization !== `Bearer ${token}`) {
      return new Response(JSON.stringify({ error: 'forbidden' }), { status: 403, headers: { 'Content-Type': 'application/json' } });
    }
    return new Response(PDF_BYTES, { status: 200, headers: { 'Content-Type': 'application/pdf' } });
  });
}

/** jsdom's Blob has no text(): read it the way a page of its era would. */
function blobText(blob: Blob): Promise<string> {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result));
    reader.onerror = () => reject(reader.error);
    reader.readAsText(blob);
  });
}

let container: HTMLElement;
let root: Root;
/** Whether the last click on the link was left to the browser (a plain link). */
let lastClickDefaultPrevented: boolean | null;

function recordClick(event: Event) {
  lastClickDefaultPrevented = event.defaultPrevented;
  event.preventDefault(); // jsdom cannot navigate; React has already run
}

beforeEach(() => {
  container = document.body.appendChild(document.createElement('div'));
  root = createRoot(container);
  lastClickDefaultPrevented = null;
  document.addEventListener('click', recordClick);
  document.addEventListener('auxclick', recordClick);
});

afterEach(() => {
  act(() => root.unmount());
  container.remove();
  document.removeEventListener('click', recordClick);
  document.removeEventListener('auxclick', recordClick);
  vi.useRealTimers();
});

const link = () => container.querySelector('[data-testid="oncoflow-report-link"]') as HTMLAnchorElement;
const status = () => container.querySelector('[data-testid="oncoflow-report-status"]');
const settle = () => act(() => new Promise<void>((resolve) => setTimeout(resolve, 5)));

async function render(element: React.ReactElement) {
  await act(async () => root.render(element));
}

describe('signed PDF report link', () => {
  it('is a plain link to the route when the viewer has no token', async () => {
    const fetch = reportRoute('t');
    const opener = fakeOpener();
    await render(<ReportLink report={report} api={createOncoFlowApi({ fetch, headers: () => undefined })} opener={opener} />);
    expect(link().getAttribute('href')).toBe(PDF_URL);
    expect(link().target).toBe('_blank');
    expect(link().getAttribute('data-value')).toBe(REPORT_UID);
    await act(async () => link().click());
    expect(lastClickDefaultPrevented).toBe(false); // the browser follows the link itself
    expect(fetch).not.toHaveBeenCalled();
    expect(opener.tabs).toHaveLength(0);
  });

  it('fetches the PDF with the bearer token and shows it from a blob URL in a new tab', async () => {
    const fetch = reportRoute('abc');
    const opener = fakeOpener();
    const api = createOncoFlowApi({ fetch, headers: () => ({ Authorization: 'Bearer abc' }) });
    await render(<ReportLink report={report} api={api} opener={opener} />);
    expect(link().getAttribute('href')).toBe(PDF_URL); // still says what the report is

    await act(async () => link().click());
    expect(lastClickDefaultPrevented).toBe(true);
    expect(opener.tabs).toHaveLength(1); // opened inside the click, before the fetch
    await settle();

    expect(fetch).toHaveBeenCalledTimes(1);
    const [url, init] = fetch.mock.calls[0] ?? [];
    expect(url).toBe(PDF_URL);
    expect((init?.headers as Record<string, string>).Authorization).toBe('Bearer abc');
    expect(opener.blobs).toHaveLength(1);
    expect(opener.blobs[0]?.type).toBe('application/pdf');
    expect(await blobText(opener.blobs[0]!)).toBe(PDF_BYTES);
    expect(opener.tabs[0]?.location.href).toBe('blob:http://localhost/pdf-1');
    expect(status()).toBeNull();
  });

  it('also takes a middle click, and downloads when the tab is blocked', async () => {
    const fetch = reportRoute('abc');
    const opener = fakeOpener();
    opener.blockTabs = true;
    const api = createOncoFlowApi({ fetch, headers: () => ({ Authorization: 'Bearer abc' }) });
    await render(<ReportLink report={report} api={api} opener={opener} />);
    await act(async () => link().dispatchEvent(new MouseEvent('auxclick', { bubbles: true, cancelable: true, button: 1 })));
    expect(lastClickDefaultPrevented).toBe(true);
    await settle();
    expect(opener.downloads).toEqual([['blob:http://localhost/pdf-1', `oncoflow-report-${REPORT_UID}.pdf`]]);
  });

  it('closes the tab and says why when the route refuses', async () => {
    const fetch = reportRoute('another-token');
    const opener = fakeOpener();
    const api = createOncoFlowApi({ fetch, headers: () => ({ Authorization: 'Bearer abc' }) });
    await render(<ReportLink report={report} api={api} opener={opener} />);
    await act(async () => link().click());
    await settle();
    expect(opener.tabs[0]?.closed).toBe(true);
    expect(opener.blobs).toHaveLength(0);
    expect(status()?.textContent).toBe('The signed PDF could not be opened: forbidden (HTTP 403)');
  });

  it('revokes its blob URLs a while after the panel goes', async () => {
    const fetch = reportRoute('abc');
    const opener = fakeOpener();
    const api = createOncoFlowApi({ fetch, headers: () => ({ Authorization: 'Bearer abc' }) });
    await render(<ReportLink report={report} api={api} opener={opener} />);
    await act(async () => link().click());
    await settle();
    vi.useFakeTimers();
    await act(async () => root.render(<div />));
    expect(opener.revoked).toEqual([]);
    vi.advanceTimersByTime(OBJECT_URL_GRACE_MS);
    expect(opener.revoked).toEqual(['blob:http://localhost/pdf-1']);
  });
});
