import type { RegionRow } from '../panelModel';

export interface RegionTableProps {
  regions: RegionRow[];
}

/** The tumour regions (enhancing tumour, tumour core, whole tumour) fused across the panel, and which one is measured. */
export function RegionTable({ regions }: RegionTableProps) {
  if (!regions.length) {
    return null;
  }
  return (
    <section>
      <h3>Tumour regions</h3>
      <table>
        <thead>
          <tr>
            <th>Region</th>
            <th>Volume</th>
            <th title="Mean pairwise Dice of the experts that segment the region">Agreement</th>
          </tr>
        </thead>
        <tbody>
          {regions.map((r) => (
            <tr
              key={r.region}
              data-testid="oncoflow-region-row"
              data-region={r.region}
              data-measured={r.measured ? 'true' : 'false'}
              title={r.experts ? `experts: ${r.experts}` : undefined}
            >
              <td>
                {r.name} ({r.region}){r.measured ? ' · measured' : ''}
              </td>
              <td data-testid="oncoflow-region-volume" data-value={r.volume.raw}>
                {r.volume.text}
              </td>
              <td data-testid="oncoflow-region-agreement" data-value={r.agreement.raw}>
                {r.agreement.text} · {r.flag}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}
