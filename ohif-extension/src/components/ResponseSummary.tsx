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
              <SumRow label={`Target sum (${response.unit})`} testId="oncoflow-response-target-sum" value={response.targetSum} />
              <SumRow label="Baseline sum" testId="oncoflow-response-baseline-sum" value={response.baselineSum} />
              <SumRow label="Nadir sum" value={response.nadirSum} />
              <SumRow label="Change vs baseline" testId="oncoflow-response-change-baseline" value={response.changeFromBaseline} />
              <SumRow label="Change vs nadir" testId="oncoflow-response-change-nadir" value={response.changeFromNadir} />
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

/** One number of the response: its label, and the value with its raw number in `data-value`. */
function SumRow({ label, testId, value }: { label: string; testId?: string; value: ResponseView['targetSum'] }) {
  return (
    <tr>
      <td className="of-muted">{label}</td>
      <td data-testid={testId} data-value={value.raw}>
        {value.text}
      </td>
    </tr>
  );
}
