import { useCallback, useEffect, useRef, useState, type MouseEvent } from 'react';
import { OncoFlowApiError, type OncoFlowApi } from '../api';
import type { ReportView } from '../panelModel';

/** What opening a fetched PDF needs from the browser (injectable: jsdom has no object URLs). */
export interface PdfOpener {
  /** An empty tab opened synchronously inside the click (user activation), or null when it is blocked. */
  openTab(): Window | null;
  createObjectUrl(blob: Blob): string;
  revokeObjectUrl(url: string): void;
  /** Saves `url` as `fileName` (the fallback when no tab could be opened). */
  download(url: string, fileName: string): void;
}

export const browserPdfOpener: PdfOpener = {
  openTab() {
    const tab = window.open('', '_blank');
    if (tab) {
      tab.opener = null; // the PDF tab cannot reach back into the viewer
    }
    return tab;
  },
  createObjectUrl: (blob) => URL.createObjectURL(blob),
  revokeObjectUrl: (url) => URL.revokeObjectURL(url),
  download(url, fileName) {
    const anchor = document.createElement('a');
    anchor.href = url;
    anchor.download = fileName;
    anchor.rel = 'noopener';
    document.body.appendChild(anchor);
    anchor.click();
    anchor.remove();
  },
};

export interface ReportLinkProps {
  report: ReportView;
  api: Pick<OncoFlowApi, 'reportPdfUrl' | 'reportPdf' | 'sendsAuthorization'>;
  opener?: PdfOpener;
}

/** How long a blob URL outlives the panel (a tab given it just before may still be loading it). */
export const OBJECT_URL_GRACE_MS = 60_000;

type FetchState = { kind: 'idle' } | { kind: 'fetching' } | { kind: 'error'; message: string };

function revokeLater(opener: PdfOpener, urls: string[]): void {
  if (urls.length) {
    setTimeout(() => urls.forEach((url) => opener.revokeObjectUrl(url)), OBJECT_URL_GRACE_MS);
  }
}

function messageOf(error: unknown): string {
  if (error instanceof OncoFlowApiError) {
    return `${error.message} (HTTP ${error.status})`;
  }
  return error instanceof Error ? error.message : String(error);
}

/**
 * The signed PDF report of the focus study, opened in a new tab.
 *
 * Without a signed-in viewer it is a plain link. When OncoFlow's requests carry the viewer's bearer token,
 * a new tab would not send it (the route answers 403), so a click fetches the PDF with the token and shows
 * it from a blob URL: in a tab opened during the click, or as a download when the tab is blocked. The link
 * keeps the route in `href` either way (what the report is), and the blob URLs live until the panel goes.
 */
export function ReportLink({ report, api, opener = browserPdfOpener }: ReportLinkProps) {
  const [state, setState] = useState<FetchState>({ kind: 'idle' });
  const objectUrls = useRef<string[]>([]);
  const mounted = useRef(true);

  useEffect(() => {
    mounted.current = true;
    const urls = objectUrls.current;
    return () => {
      mounted.current = false;
      revokeLater(opener, urls.splice(0));
    };
  }, [opener]);

  const sopInstanceUid = report.sopInstanceUid;
  const onOpen = useCallback(
    (event: MouseEvent<HTMLAnchorElement>) => {
      if (!sopInstanceUid || !api.sendsAuthorization() || (event.type === 'auxclick' && event.button !== 1)) {
        return; // a plain link: the browser opens it
      }
      event.preventDefault();
      const tab = opener.openTab();
      setState({ kind: 'fetching' });
      api.reportPdf(sopInstanceUid).then(
        (pdf) => {
          const url = opener.createObjectUrl(pdf);
          objectUrls.current.push(url);
          if (tab && !tab.closed) {
            tab.location.href = url;
          } else {
            opener.download(url, `oncoflow-report-${sopInstanceUid}.pdf`);
          }
          if (mounted.current) {
            setState({ kind: 'idle' });
          } else {
            revokeLater(opener, objectUrls.current.splice(0));
          }
        },
        (error: unknown) => {
          tab?.close();
          if (mounted.current) {
            setState({ kind: 'error', message: `The signed PDF could not be opened: ${messageOf(error)}` });
          }
        },
      );
    },
    [api, opener, sopInstanceUid],
  );

  if (!report.sopInstanceUid && !report.error) {
    return null;
  }
  return (
    <section>
      <h3>Report</h3>
      {report.sopInstanceUid ? (
        <>
          <a
            data-testid="oncoflow-report-link"
            data-value={report.sopInstanceUid}
            href={api.reportPdfUrl(report.sopInstanceUid)}
            target="_blank"
            rel="noopener noreferrer"
            aria-busy={state.kind === 'fetching'}
            onClick={onOpen}
            onAuxClick={onOpen}
          >
            Open the signed PDF report
          </a>
          {state.kind === 'fetching' ? (
            <div className="of-muted" data-testid="oncoflow-report-status">
              Fetching the signed PDF…
            </div>
          ) : null}
          {state.kind === 'error' ? (
            <div className="of-error" data-testid="oncoflow-report-status">
              {state.message}
            </div>
          ) : null}
        </>
      ) : (
        <div className="of-muted">{report.error}</div>
      )}
    </section>
  );
}
