import type { ComparisonView, FlagView, VolumesView } from '../panelModel';

export interface ChangeSummaryProps {
  flag: FlagView | null;
  volumes: VolumesView | null;
  comparison: ComparisonView | null;
}

/** The flag and its reason, the baseline / follow-up volumes and the % change, then details. */
export function ChangeSummary({ flag, volumes, comparison }: ChangeSummaryProps) {
  if (!flag && !volumes) {
    return null;
  }
  return (
    <section>
      <h3>Change</h3>
      {flag ? (
        <div>
          <div className={`of-flag of-flag-${flag.tone}`} data-testid="oncoflow-flag" data-value={flag.raw}>
            {flag.label}
          </div>
          <div className="of-muted" data-testid="oncoflow-flag-reason" data-value={flag.reason}>
            {flag.reason}
          </div>
        </div>
      ) : null}
      {volumes ? (
        <div>
          {volumes.baseline ? (
            <div className="of-row">
              <span className="of-muted">
                Volume, baseline{comparison?.baselineDate ? ` (${comparison.baselineDate})` : volumes.baselineOnly ? ' (this study)' : ''}
              </span>
              <span className="of-big" data-testid="oncoflow-volume-baseline" data-value={volumes.baseline.raw}>
                {volumes.baseline.text}
              </span>
            </div>
          ) : null}
          {volumes.followUp ? (
            <div className="of-row">
              <span className="of-muted">
                Volume, follow-up{comparison?.followUpDate ? ` (${comparison.followUpDate})` : ''}
              </span>
              <span className="of-big" data-testid="oncoflow-volume-follow-up" data-value={volumes.followUp.raw}>
                {volumes.followUp.text}
              </span>
            </div>
          ) : null}
          {volumes.percentChange ? (
            <div className="of-row">
              <span className="of-muted">Change</span>
              <span>
                <span className="of-big" data-testid="oncoflow-percent-change" data-value={volumes.percentChange.raw}>
                  {volumes.percentChange.text}
                </span>
                {volumes.percentChangeCi ? (
                  <span className="of-muted" data-testid="oncoflow-percent-change-ci">
                    {' '}
                    (95% CI {volumes.percentChangeCi})
                  </span>
                ) : null}
              </span>
            </div>
          ) : null}
        </div>
      ) : null}
      {comparison ? (
        <table>
          <tbody>
            {comparison.details.map((row) => (
              <tr key={row.label}>
                <td className="of-muted">{row.label}</td>
                <td data-value={row.value.raw}>{row.value.text}</td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : null}
    </section>
  );
}
