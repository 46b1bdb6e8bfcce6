import { useCallback, useEffect, useState } from 'react';
import { CLINICAL_STATUSES, OncoFlowApiError, type ClinicalEntry, type ClinicalStateAnswer, type OncoFlowApi } from '../api';
import {
  CLINICAL_STATUS_LABELS,
  clinicalStatusFromForm,
  describeEntered,
  entryFromForm,
  formChanged,
  formFromEntry,
  type ClinicalForm,
} from '../clinicalState';

export interface ClinicalStateControlProps {
  api: Pick<OncoFlowApi, 'clinicalState' | 'saveClinicalState'>;
  studyInstanceUid: string;
  studyDate: string | null;
  /** The timeline's `clinical` of this visit: the form's start until the route answers (or when it cannot). */
  fromTimeline: ClinicalEntry | null;
  /** After a save: the panel reloads the timeline (its response is the one shown). */
  onSaved: () => void;
  timeZone?: string;
}

type Message = { kind: 'saved' | 'error' | 'info'; text: string } | null;

function messageOf(error: unknown): string {
  if (error instanceof OncoFlowApiError) {
    return `${error.message} (HTTP ${error.status})`;
  }
  return error instanceof Error ? error.message : String(error);
}

/**
 * The visit's clinical state, which RANO reads beside the images: clinical status (improved /
 * stable / worse / not entered) and the dexamethasone-equivalent steroid dose (mg/day, empty when
 * not known). Read with `GET …/clinical-state`, saved with `PUT` (route errors shown as they come).
 */
export function ClinicalStateControl({ api, studyInstanceUid, studyDate, fromTimeline, onSaved, timeZone }: ClinicalStateControlProps) {
  const [stored, setStored] = useState<ClinicalStateAnswer | null>(null);
  const [form, setForm] = useState<ClinicalForm>(() => formFromEntry(fromTimeline));
  const [busy, setBusy] = useState(false);
  const [loading, setLoading] = useState(true);
  const [message, setMessage] = useState<Message>(null);

  useEffect(() => {
    let cancelled = false;
    setStored(null);
    setLoading(true);
    setMessage(null);
    setForm(formFromEntry(fromTimeline));
    api
      .clinicalState(studyInstanceUid)
      .then((answer) => {
        if (!cancelled) {
          setStored(answer);
          setForm(formFromEntry(answer));
          setLoading(false);
        }
      })
      .catch((error: unknown) => {
        if (!cancelled) {
          setLoading(false);
          setMessage({ kind: 'error', text: `The stored clinical state cannot be read: ${messageOf(error)}` });
        }
      });
    return () => {
      cancelled = true;
    };
    // the timeline's value only seeds the form when the study changes (a reload must not undo typing)
  }, [api, studyInstanceUid]);

  const onSave = useCallback(() => {
    const parsed = entryFromForm(form);
    if (!parsed.ok) {
      setMessage({ kind: 'error', text: parsed.error });
      return;
    }
    setBusy(true);
    setMessage(null);
    api
      .saveClinicalState(studyInstanceUid, parsed.entry)
      .then((answer) => {
        setStored(answer);
        setForm(formFromEntry(answer));
        const label = answer.response?.label;
        setMessage({ kind: 'saved', text: `Saved.${label ? ` Response now: ${label}.` : ''}` });
        onSaved();
      })
      .catch((error: unknown) => setMessage({ kind: 'error', text: `Not saved: ${messageOf(error)}` }))
      .finally(() => setBusy(false));
  }, [api, form, onSaved, studyInstanceUid]);

  const reference = stored ?? fromTimeline;
  const changed = formChanged(form, reference);
  return (
    <section data-testid="oncoflow-clinical" data-study-instance-uid={studyInstanceUid}>
      <h3>Clinical state{studyDate ? ` · ${studyDate}` : ''}</h3>
      <div className="of-clinical">
        <label>
          <span className="of-muted">Clinical status</span>
          <select
            data-testid="oncoflow-clinical-status"
            value={form.status}
            disabled={busy}
            onChange={(event) => setForm({ ...form, status: clinicalStatusFromForm(event.target.value) })}
          >
            {(['', ...CLINICAL_STATUSES] as const).map((status) => (
              <option key={status} value={status}>
                {CLINICAL_STATUS_LABELS[status]}
              </option>
            ))}
          </select>
        </label>
        <label title="Dexamethasone-equivalent dose in mg per day; 0 for none, empty when not known">
          <span className="of-muted">Steroid (dexamethasone-eq., mg/day)</span>
          <input
            data-testid="oncoflow-clinical-steroid"
            type="text"
            inputMode="decimal"
            placeholder="not known"
            value={form.steroid}
            disabled={busy}
            onChange={(event) => setForm({ ...form, steroid: event.target.value })}
          />
        </label>
        <button type="button" data-testid="oncoflow-clinical-save" disabled={busy || !changed} onClick={onSave}>
          {busy ? 'Saving…' : 'Save'}
        </button>
      </div>
      <div
        className="of-muted"
        data-testid="oncoflow-clinical-entered"
        data-status={stored?.status ?? ''}
        data-value={stored?.steroid_mg_per_day === null || stored?.steroid_mg_per_day === undefined ? '' : String(stored.steroid_mg_per_day)}
      >
        {stored ? describeEntered(stored, timeZone) : loading ? 'Loading the stored clinical state…' : null}
      </div>
      {message ? (
        <div className={message.kind === 'error' ? 'of-error' : 'of-muted'} data-testid="oncoflow-clinical-message" data-kind={message.kind} role={message.kind === 'error' ? 'alert' : undefined}>
          {message.text}
        </div>
      ) : null}
    </section>
  );
}
