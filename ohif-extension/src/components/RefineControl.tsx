import type { RefinementRow } from '../panelModel';
import type { RefineTool } from './useRefineTool';
import { formatVolume } from '../format';

export interface RefineControlProps {
  tool: RefineTool;
  refinements: RefinementRow[];
  disabled: boolean;
}

function statusText(tool: RefineTool): { text: string; isError: boolean } | null {
  const status = tool.status;
  switch (status.kind) {
    case 'off':
      return null;
    case 'waiting':
      return { text: 'Click on the tumour in a viewport (Shift-click marks background).', isError: false };
    case 'sending': {
      const [x, y, z] = status.point.positionMm;
      return { text: `Refining at (${x.toFixed(1)}, ${y.toFixed(1)}, ${z.toFixed(1)}) mm LPS…`, isError: false };
    }
    case 'done':
      return {
        text: `Refined SEG v${status.result.version}${status.result.volume_cm3 !== undefined ? `, ${formatVolume(status.result.volume_cm3)}` : ''}: ${status.viewerMessage}.`,
        isError: false,
      };
    case 'error':
      return { text: status.message, isError: true };
  }
}

/** The "Refine with SAM2" toggle, its progress and the study's refined SEG versions. */
export function RefineControl({ tool, refinements, disabled }: RefineControlProps) {
  const status = statusText(tool);
  return (
    <section>
      <h3>Refine</h3>
      <button
        type="button"
        data-testid="oncoflow-refine-toggle"
        aria-pressed={tool.enabled}
        onClick={tool.toggle}
        disabled={disabled && !tool.enabled}
      >
        {tool.enabled ? 'Refining: click the image (on)' : 'Refine with SAM2'}
      </button>
      {status ? (
        <div className={status.isError ? 'of-error' : 'of-muted'} data-testid="oncoflow-refine-status">
          {status.text}
        </div>
      ) : null}
      {refinements.length ? (
        <ul>
          {refinements.map((r) => (
            <li key={r.version} className="of-row" title={r.sopInstanceUid}>
              <span className="of-muted">SEG v{r.version}</span>
              <span data-value={r.volume.raw}>{r.volume.text}</span>
            </li>
          ))}
        </ul>
      ) : null}
    </section>
  );
}
