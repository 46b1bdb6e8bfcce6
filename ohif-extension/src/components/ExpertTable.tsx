import type { AgreementView, ExpertRow } from '../panelModel';

export interface ExpertTableProps {
  experts: ExpertRow[];
  agreement: AgreementView | null;
}

/** The expert panel: each expert's volume and agreement with the fused ensemble, or why it did not run. */
export function ExpertTable({ experts, agreement }: ExpertTableProps) {
  if (!experts.length && !agreement) {
    return null;
  }
  return (
    <section>
      <h3>Experts</h3>
      {agreement ? (
        <div className="of-row">
          <span className="of-muted">Agreement ({agreement.strategy})</span>
          <span data-testid="oncoflow-agreement" data-value={agreement.score.raw}>
            {agreement.score.text} · {agreement.flag}
          </span>
        </div>
      ) : null}
      <table>
        <thead>
          <tr>
            <th>Expert</th>
            <th>Volume</th>
            <th title="Dice vs the fused ensemble">Dice</th>
            <th>Time</th>
          </tr>
        </thead>
        <tbody>
          {experts.map((e) => [
            <tr
              key={e.name}
              className={e.ran ? undefined : 'of-skipped'}
              data-testid="oncoflow-expert-row"
              data-expert={e.name}
              data-status={e.status}
              title={e.version ? `version ${e.version}` : undefined}
            >
              <td>{e.name}</td>
              <td data-testid="oncoflow-expert-volume" data-value={e.volume.raw}>
                {e.volume.text}
              </td>
              <td data-testid="oncoflow-expert-dice" data-value={e.diceVsEnsemble.raw}>
                {e.diceVsEnsemble.text}
              </td>
              <td>{e.runtime}</td>
            </tr>,
            e.ran ? null : (
              <tr key={`${e.name}-reason`} className="of-skipped">
                <td className="of-reason" colSpan={4} data-testid="oncoflow-expert-status">
                  {e.statusText}
                </td>
              </tr>
            ),
          ])}
        </tbody>
      </table>
    </section>
  );
}
