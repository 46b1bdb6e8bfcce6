import type { ReportView } from '../panelModel';

export interface ReportLinkProps {
  report: ReportView;
  href: (reportSopInstanceUid: string) => string;
}

/** The signed PDF report of the focus study, opened in a new tab. */
export function ReportLink({ report, href }: ReportLinkProps) {
  if (!report.sopInstanceUid && !report.error) {
    return null;
  }
  return (
    <section>
      <h3>Report</h3>
      {report.sopInstanceUid ? (
        <a
          data-testid="oncoflow-report-link"
          data-value={report.sopInstanceUid}
          href={href(report.sopInstanceUid)}
          target="_blank"
          rel="noopener noreferrer"
        >
          Open the signed PDF report
        </a>
      ) : (
        <div className="of-muted">{report.error}</div>
      )}
    </section>
  );
}
