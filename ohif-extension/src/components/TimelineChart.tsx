import type { TimePointRow } from '../panelModel';
import type { TimelineChartModel } from '../timelineChartModel';
import { formatInUnit, formatVolume, unitText } from '../format';

export interface TimelineChartProps {
  chart: TimelineChartModel | null;
  timePoints: TimePointRow[];
  note: string | null;
}

/** Fused volume per time point with its 95 % interval band, drawn from precomputed geometry. */
export function TimelineChart({ chart, timePoints, note }: TimelineChartProps) {
  const sum = chart?.targetSum ?? null;
  return (
    <section>
      <h3>Volume timeline</h3>
      {note ? <div className="of-muted">{note}</div> : null}
      {chart && chart.points.length ? (
        <svg
          data-testid="oncoflow-timeline-chart"
          viewBox={`0 0 ${chart.width} ${chart.height}`}
          width="100%"
          role="img"
          aria-label={`Tumour volume over time with 95% interval${sum ? ', and the sum of target lesions' : ''}`}
        >
          {chart.yTicks.map((tick) => (
            <g key={`y${tick.label}`}>
              <line className="of-chart-axis" x1={chart.plot.left} x2={chart.plot.right} y1={tick.position} y2={tick.position} opacity={0.4} />
              <text x={chart.plot.left - 4} y={tick.position + 3} textAnchor={tick.anchor}>
                {tick.label}
              </text>
            </g>
          ))}
          <line className="of-chart-axis" x1={chart.plot.left} x2={chart.plot.right} y1={chart.plot.bottom} y2={chart.plot.bottom} />
          {chart.xTicks.map((tick) => (
            <text key={`x${tick.label}`} x={tick.position} y={chart.plot.bottom + 14} textAnchor={tick.anchor}>
              {tick.label}
            </text>
          ))}
          {chart.bandPath ? <path className="of-chart-band" d={chart.bandPath} data-testid="oncoflow-timeline-band" /> : null}
          {chart.linePath ? <path className="of-chart-line" d={chart.linePath} /> : null}
          {sum?.ownAxis
            ? sum.ticks.map((tick) => (
                <text key={`s${tick.label}`} x={chart.plot.right + 4} y={tick.position + 3} textAnchor={tick.anchor}>
                  {tick.label}
                </text>
              ))
            : null}
          {sum?.ownAxis ? (
            <text x={chart.plot.right} y={chart.plot.top - 2} textAnchor="end">
              {unitText(sum.unit)}
            </text>
          ) : null}
          {sum?.linePath ? <path className="of-chart-sum" d={sum.linePath} data-testid="oncoflow-timeline-sum-line" /> : null}
          {sum?.points.map((p) => (
            <rect
              key={`sum-${p.studyInstanceUid}`}
              className="of-chart-sum-point"
              x={p.x - 2.5}
              y={p.y - 2.5}
              width={5}
              height={5}
              data-testid="oncoflow-timeline-sum-point"
              data-study-instance-uid={p.studyInstanceUid}
              data-value={String(p.value)}
            >
              <title>{`${p.studyDate}: target lesions ${formatInUnit(p.value, sum.unit)}`}</title>
            </rect>
          ))}
          {chart.points.map((p) => (
            <g key={p.studyInstanceUid}>
              {p.ci95Cm3 ? <line className="of-chart-ci" x1={p.x} x2={p.x} y1={p.yUpper} y2={p.yLower} /> : null}
              <circle
                className={`of-chart-point${p.isFocus ? ' of-focus' : ''}${p.isBaseline ? ' of-baseline' : ''}`}
                cx={p.x}
                cy={p.y}
                r={p.isFocus ? 4 : 3}
                data-testid="oncoflow-timeline-point"
                data-study-instance-uid={p.studyInstanceUid}
                data-value={String(p.volumeCm3)}
              >
                <title>
                  {`${p.studyDate}: ${formatVolume(p.volumeCm3)}${p.ci95Cm3 ? ` (95% CI ${p.ci95Cm3[0]} to ${p.ci95Cm3[1]} cm³${p.ciClipped ? ', clipped in the chart' : ''})` : ' (no interval)'}`}
                </title>
              </circle>
            </g>
          ))}
          <text x={chart.plot.left} y={chart.plot.top - 2} textAnchor="start">
            cm³
          </text>
        </svg>
      ) : null}
      {sum && chart?.points.length ? (
        <div className="of-muted" data-testid="oncoflow-timeline-legend">
          <span className="of-legend-volume">● volume (cm³)</span>{' '}
          <span className="of-legend-sum">■ target lesion sum ({unitText(sum.unit)}{sum.ownAxis ? ', right axis' : ''})</span>
        </div>
      ) : null}
      {chart?.clippedIntervals ? (
        <div className="of-muted" data-testid="oncoflow-timeline-clipped">
          Some 95% intervals reach beyond the axis and are drawn clipped (values in the tooltips).
        </div>
      ) : null}
      {timePoints.length ? (
        <table data-testid="oncoflow-time-points">
          <thead>
            <tr>
              <th>Date</th>
              <th>Volume</th>
              <th>Flag</th>
            </tr>
          </thead>
          <tbody>
            {timePoints.map((t) => (
              <tr key={t.studyInstanceUid} title={t.error ?? t.studyInstanceUid} style={t.isFocus ? { fontWeight: 600 } : undefined}>
                <td>
                  {t.studyDate}
                  {t.inViewer ? ' •' : ''}
                </td>
                <td data-value={t.volume.raw}>{t.volume.text}</td>
                <td>{t.flag}</td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : null}
    </section>
  );
}
