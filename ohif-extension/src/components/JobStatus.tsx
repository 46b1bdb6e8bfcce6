import type { JobView } from '../panelModel';

export interface JobStatusProps {
  job: JobView;
  onReanalyse: () => void;
  reanalyseDisabled: boolean;
  reanalyseMessage: string | null;
}

/** The focus study's job: state (live while it runs), error, events, stage timings, Re-analyse. */
export function JobStatus({ job, onReanalyse, reanalyseDisabled, reanalyseMessage }: JobStatusProps) {
  return (
    <section>
      <h3>Analysis</h3>
      <div className="of-row">
        <span>
          <span
            className={`of-badge of-state-${job.state}`}
            data-testid="oncoflow-job-state"
            data-value={job.state}
            aria-live="polite"
          >
            {job.label}
          </span>
          {job.isActive ? <span className="of-muted"> (updating every 2 s)</span> : null}
        </span>
        <button type="button" data-testid="oncoflow-reanalyse" onClick={onReanalyse} disabled={reanalyseDisabled}>
          Re-analyse
        </button>
      </div>
      {reanalyseMessage ? <div className="of-muted">{reanalyseMessage}</div> : null}
      {job.error ? <div className="of-error">{job.error}</div> : null}
      {job.tumourVolume ? (
        <div className="of-row">
          <span className="of-muted">Fused tumour volume</span>
          <span data-testid="oncoflow-tumour-volume" data-value={job.tumourVolume.raw}>
            {job.tumourVolume.text}
          </span>
        </div>
      ) : null}
      {job.events.length ? (
        <ul className="of-events" data-testid="oncoflow-job-events">
          {job.events.map((event, index) => (
            <li key={`${index}-${event.clock}`}>
              <span className="of-muted">{event.clock}</span>
              <span>{event.message}</span>
            </li>
          ))}
        </ul>
      ) : null}
      {job.timings.length ? (
        <div className="of-muted" data-testid="oncoflow-job-timings">
          {job.timings.map((t) => `${t.stage} ${t.text}`).join(' · ')}
        </div>
      ) : null}
    </section>
  );
}
