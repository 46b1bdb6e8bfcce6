/**
 * The panel's stylesheet, scoped under `.oncoflow-panel` and injected once into the page
 * (OHIF's Tailwind classes are purged to what OHIF itself uses, so the panel brings its own).
 */

const STYLE_ELEMENT_ID = 'oncoflow-panel-styles';

export const PANEL_CSS = `
.oncoflow-panel { color: #e2e8f0; font-size: 12px; line-height: 1.45; padding: 8px 10px 16px; display: flex; flex-direction: column; gap: 10px; }
.oncoflow-panel h3 { font-size: 11px; font-weight: 600; letter-spacing: .04em; text-transform: uppercase; color: #8ea5c8; margin: 0 0 4px; }
.oncoflow-panel section { border-top: 1px solid #1f2a44; padding-top: 8px; }
.oncoflow-panel .of-row { display: flex; justify-content: space-between; gap: 8px; }
.oncoflow-panel .of-muted { color: #94a3b8; }
.oncoflow-panel .of-error { color: #fca5a5; }
.oncoflow-panel .of-badge { display: inline-block; border-radius: 3px; padding: 0 6px; font-weight: 600; }
.oncoflow-panel .of-state-queued, .oncoflow-panel .of-state-running { background: #1e3a8a; color: #bfdbfe; }
.oncoflow-panel .of-state-done { background: #14532d; color: #bbf7d0; }
.oncoflow-panel .of-state-failed, .oncoflow-panel .of-state-error { background: #7f1d1d; color: #fecaca; }
.oncoflow-panel .of-state-none, .oncoflow-panel .of-state-idle, .oncoflow-panel .of-state-loading { background: #334155; color: #e2e8f0; }
.oncoflow-panel .of-flag-alert { color: #fca5a5; }
.oncoflow-panel .of-flag-review { color: #fcd34d; }
.oncoflow-panel .of-flag-good { color: #86efac; }
.oncoflow-panel .of-flag-neutral { color: #e2e8f0; }
.oncoflow-panel .of-flag { font-size: 14px; font-weight: 700; }
.oncoflow-panel .of-big { font-size: 14px; font-weight: 600; }
.oncoflow-panel table { width: 100%; border-collapse: collapse; }
.oncoflow-panel th, .oncoflow-panel td { text-align: right; padding: 2px 3px; white-space: nowrap; }
.oncoflow-panel th:first-child, .oncoflow-panel td:first-child { text-align: left; }
.oncoflow-panel th { color: #8ea5c8; font-weight: 500; }
.oncoflow-panel td.of-reason { text-align: left; white-space: normal; color: #94a3b8; }
.oncoflow-panel tr.of-skipped td { color: #94a3b8; }
.oncoflow-panel ul { list-style: none; margin: 0; padding: 0; }
.oncoflow-panel .of-events { max-height: 120px; overflow-y: auto; }
.oncoflow-panel .of-events li { display: flex; gap: 6px; }
.oncoflow-panel .of-events li span:first-child { flex: none; white-space: nowrap; }
.oncoflow-panel .of-events li span:last-child { min-width: 0; overflow-wrap: anywhere; }
.oncoflow-panel div.of-error, .oncoflow-panel div.of-muted { overflow-wrap: anywhere; }
.oncoflow-panel button { background: #1e3a8a; color: #e0f2fe; border: 1px solid #3b82f6; border-radius: 4px; padding: 3px 10px; cursor: pointer; font-size: 12px; }
.oncoflow-panel button:disabled { opacity: .5; cursor: default; }
.oncoflow-panel button[aria-pressed="true"] { background: #0e7490; border-color: #22d3ee; }
.oncoflow-panel a { color: #5acce6; text-decoration: underline; }
.oncoflow-panel .of-studies { display: flex; gap: 4px; flex-wrap: wrap; }
.oncoflow-panel .of-studies button { background: transparent; }
.oncoflow-panel .of-studies button[aria-pressed="true"] { background: #1e3a8a; }
.oncoflow-panel svg text { fill: #94a3b8; font-size: 9px; }
.oncoflow-panel .of-chart-band { fill: rgba(90, 204, 230, .18); stroke: none; }
.oncoflow-panel .of-chart-line { fill: none; stroke: #5acce6; stroke-width: 1.5; }
.oncoflow-panel .of-chart-axis { stroke: #334155; stroke-width: 1; }
.oncoflow-panel .of-chart-ci { stroke: #5acce6; stroke-width: 1; opacity: .7; }
.oncoflow-panel .of-chart-point { fill: #5acce6; }
.oncoflow-panel .of-chart-point.of-focus { fill: #fbbf24; }
.oncoflow-panel .of-chart-point.of-baseline { fill: #e2e8f0; }
.oncoflow-panel .of-chart-sum { fill: none; stroke: #f472b6; stroke-width: 1.5; stroke-dasharray: 4 2; }
.oncoflow-panel .of-chart-sum-point { fill: #f472b6; }
.oncoflow-panel tbody.of-lesion td.of-reason { padding-top: 0; padding-left: 10px; }
.oncoflow-panel tbody.of-lesion tr:first-child td { padding-top: 4px; }
.oncoflow-panel tbody.of-selectable { cursor: pointer; }
.oncoflow-panel tbody.of-selectable:hover td { background: rgba(90, 204, 230, .08); }
.oncoflow-panel tbody.of-selected td:first-child { box-shadow: inset 2px 0 0 #fbbf24; }
.oncoflow-panel button.of-lesion-goto { background: transparent; border: none; padding: 0; color: #5acce6; text-decoration: underline; }
.oncoflow-panel .of-clinical { display: flex; flex-wrap: wrap; gap: 6px 10px; align-items: flex-end; }
.oncoflow-panel .of-clinical label { display: flex; flex-direction: column; gap: 2px; }
.oncoflow-panel .of-clinical select, .oncoflow-panel .of-clinical input { background: #0b1220; color: #e2e8f0; border: 1px solid #334155; border-radius: 3px; padding: 2px 4px; font-size: 12px; }
.oncoflow-panel .of-clinical input { width: 7em; }
.oncoflow-panel button.of-link { background: transparent; border: none; padding: 0; color: #5acce6; text-decoration: underline; align-self: flex-start; }
.oncoflow-panel fieldset.of-segments { border: 1px solid #334155; border-radius: 4px; margin: 4px 0; padding: 4px 8px; display: flex; flex-direction: column; gap: 2px; }
.oncoflow-panel fieldset.of-segments label { display: flex; gap: 6px; align-items: center; }
.oncoflow-panel .of-actions { display: flex; gap: 6px; margin-top: 4px; }
.oncoflow-panel .of-confirm { border: 1px solid #b45309; border-radius: 4px; padding: 4px 8px; color: #fcd34d; }
.oncoflow-panel .of-legend-volume { color: #5acce6; }
.oncoflow-panel .of-legend-sum { color: #f472b6; }
`;

/** Adds the stylesheet to `document` unless it is there already. */
export function injectPanelStyles(doc: Document = document): void {
  if (doc.getElementById(STYLE_ELEMENT_ID)) {
    return;
  }
  const style = doc.createElement('style');
  style.id = STYLE_ELEMENT_ID;
  style.textContent = PANEL_CSS;
  doc.head.appendChild(style);
}
