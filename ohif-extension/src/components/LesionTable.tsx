import type { LesionChange, LesionTableView } from '../panelModel';

export interface LesionTableProps {
  lesions: LesionTableView | null;
  /** A row clicked: the viewports go to that lesion. */
  onSelect?: (trackingId: string) => void;
  /** The lesion the viewports show (highlighted). */
  selected?: string | null;
}

const MEASURE_LABELS = { volume: 'volume', product: 'bidimensional product', diameter: 'longest diameter' } as const;

function ChangeCell({ change, testId }: { change: LesionChange; testId: string }) {
  return (
    <td data-testid={testId} data-kind={change.kind} data-value={change.raw} className={change.kind === 'change' ? undefined : 'of-muted'}>
      {change.text}
    </td>
  );
}

/**
 * The visit's lesions by tracking identifier (the same across visits): target or not, measurable or why not,
 * volume and bidimensional product now, and the change against the first visit and the visit before; then the
 * lesions of earlier visits this one no longer has.
 */
export function LesionTable({ lesions, onSelect, selected }: LesionTableProps) {
  if (!lesions) {
    return null;
  }
  const measure = MEASURE_LABELS[lesions.measure];
  return (
    <section data-testid="oncoflow-lesions" data-measure={lesions.measure}>
      <h3>Lesions</h3>
      {lesions.note ? <div className="of-muted">{lesions.note}</div> : null}
      {lesions.rows.length ? (
        <table>
          <thead>
            <tr>
              <th>Lesion</th>
              <th title="Volume">cm³</th>
              <th title="Bidimensional product: longest diameter × perpendicular diameter">mm²</th>
              <th title={`Change of the ${measure} since the first visit${lesions.baselineDate ? ` (${lesions.baselineDate})` : ''}`}>
                Δ base
              </th>
              <th title={`Change of the ${measure} since the visit before${lesions.previousDate ? ` (${lesions.previousDate})` : ''}`}>
                Δ prev
              </th>
            </tr>
          </thead>
          {lesions.rows.map((row) => (
            <tbody
              key={row.trackingId}
              data-testid="oncoflow-lesion-row"
              data-tracking-id={row.trackingId}
              data-status={row.status}
              data-target={row.target === null ? '' : String(row.target)}
              data-measurable={row.measurable === null ? '' : String(row.measurable)}
              data-selected={String(row.trackingId === selected)}
              className={`of-lesion${row.present ? '' : ' of-skipped'}${onSelect ? ' of-selectable' : ''}${row.trackingId === selected ? ' of-selected' : ''}`}
              onClick={onSelect ? () => onSelect(row.trackingId) : undefined}
              title={onSelect ? `Show ${row.trackingId} in the viewports` : undefined}
            >
              <tr>
                <td>
                  {onSelect ? (
                    <button type="button" className="of-lesion-goto" data-testid="oncoflow-lesion-goto">
                      {row.trackingId}
                    </button>
                  ) : (
                    row.trackingId
                  )}
                </td>
                <td data-testid="oncoflow-lesion-volume" data-value={row.volume.raw}>
                  {row.volume.text}
                </td>
                <td data-testid="oncoflow-lesion-product" data-value={row.product.raw}>
                  {row.product.text}
                </td>
                <ChangeCell change={row.vsBaseline} testId="oncoflow-lesion-vs-baseline" />
                <ChangeCell change={row.vsPrevious} testId="oncoflow-lesion-vs-previous" />
              </tr>
              <tr>
                <td colSpan={5} className="of-reason" data-testid="oncoflow-lesion-role">
                  {row.present ? `${row.statusText} · ${row.roleText} · ${row.measurableText}` : row.statusText}
                </td>
              </tr>
            </tbody>
          ))}
        </table>
      ) : null}
      {lesions.rows.length ? (
        <div className="of-muted">
          cm³: volume; mm²: bidimensional product; Δ: change of the {measure}
          {lesions.baselineDate ? `; base = first visit ${lesions.baselineDate}` : ''}
          {lesions.previousDate ? `; prev = ${lesions.previousDate}` : ''}.
        </div>
      ) : null}
    </section>
  );
}
