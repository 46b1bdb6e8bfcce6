import type { ResponseView } from '../panelModel';

export interface ResponseSummaryProps {
  response: ResponseView | null;
  note: string | null;
}

/** The visit's response (RANO 2.0 or RANO-BM): category, confirmation, criteria, the target sums and the reasons. */
export function ResponseSummary({ response, note }: ResponseSummaryProps) {
  if (!response && !note) {
    return null;
  }
  return (
    <section>
      <h3>Response</h3>
      {response ? (
        <div
          data-testid="oncoflow-response"
          data-category={response.category}
          data-confirmation={response.confirmation}
          data-criteria={response.criteria}
        >
          <div className={`of-flag of-flag-${response.tone}`} data-testid="oncoflow-response-category" data-value={response.category}>
            {response.category} · {response.categoryName}
          </div>
          <div className="of-muted" data-testid="oncoflow-response-label" data-value={response.label}>
            {response.confirmation} · {response.criteria}
          </div>
          <table>
            <tbody>
              {response.targets ? (
                <tr>
                  <td className="of-muted">Targets</td>
                  <td data-testid="oncoflow-response-targets" style={{ whiteSpace: 'normal' }}>
                    {response.targets}
                  </td>
                </tr>
              ) : null}
              <tr>
                <td className="of-muted">Target sum ({response.unit})</td>
                <td data-testid="oncoflow-response-target-sum" data-value={response.targetSum.raw}>
                  {response.targetSum.text}
                </td>
              </tr>
              <tr>
                <td className="of-muted">Baseline sum</td>
                <td data-testid="oncoflow-response-baseline-sum" data-value={response.baselineSum.raw}>
                  {response.baselineSum.text}
                </td>
              </tr>
              <tr>
                <td className="of-muted">Nadir sum</td>
                <td data-value={response.nadirSum.raw}>{response.nadirSum.text}</td>
              </tr>
              <tr>
                <td className="of-muted">Change vs baseline</td>
                <td data-testid="oncoflow-response-change-baseline" data-value={response.changeFromBaseline.raw}>
                  {response.changeFromBaseline.text}
                </td>
              </tr>
              <tr>
                <td className="of-muted">Change vs nadir</td>
                <td data-testid="oncoflow-response-change-nadir" data-value={response.changeFromNadir.raw}>
                  {response.changeFromNadir.text}
                </td>
              </tr>
            </tbody>
          </table>
          {response.reasons.length ? (
            <ul className="of-muted" data-testid="oncoflow-response-reasons">
              {response.reasons.map((reason, index) => (
                <li key={index} data-testid="oncoflow-response-reason">
                  {reason}
                </li>
              ))}
            </ul>
          ) : null}
        </div>
      ) : (
        <div className="of-muted" data-testid="oncoflow-response-note">
          {note}
        </div>
      )}
    </section>
  );
}
