/**
 * The clinical-state form of a visit (status, steroid dose) and what it sends and shows. Pure:
 * `components/ClinicalStateControl.tsx` renders it, `api.ts` sends it.
 */

import { CLINICAL_STATUSES, type ClinicalEntry, type ClinicalStateAnswer, type ClinicalStatus } from './api';
import { formatClock } from './format';

/** The form as typed: `''` = not entered. */
export interface ClinicalForm {
  status: ClinicalStatus | '';
  steroid: string;
}

export const CLINICAL_STATUS_LABELS: Record<ClinicalStatus | '', string> = {
  '': 'not entered',
  improved: 'improved',
  stable: 'stable',
  worse: 'worse',
};

export const EMPTY_CLINICAL_FORM: ClinicalForm = { status: '', steroid: '' };

export function clinicalStatusFromForm(value: string): ClinicalStatus | '' {
  return (CLINICAL_STATUSES as readonly string[]).includes(value) ? (value as ClinicalStatus) : '';
}

/** The form showing a stored entry (or an empty one). */
export function formFromEntry(entry: ClinicalEntry | null | undefined): ClinicalForm {
  if (!entry) {
    return EMPTY_CLINICAL_FORM;
  }
  const dose = entry.steroid_mg_per_day;
  return { status: entry.status ?? '', steroid: typeof dose === 'number' && Number.isFinite(dose) ? String(dose) : '' };
}

export type EntryFromForm = { ok: true; entry: ClinicalEntry } | { ok: false; error: string };

/** A plain decimal: `4`, `0.5`, `1,5`, `.5` (no sign, exponent or hex). */
const DOSE_PATTERN = /^(\d+([.,]\d*)?|[.,]\d+)$/;

/**
 * The request body of a form: an empty dose is "not known" (null), otherwise a decimal number of
 * mg/day, 0 or more (a comma is read as the decimal point). The route checks the upper bound.
 */
export function entryFromForm(form: ClinicalForm): EntryFromForm {
  const typed = form.steroid.trim();
  let dose: number | null = null;
  if (typed) {
    if (!DOSE_PATTERN.test(typed)) {
      return { ok: false, error: `steroid dose "${typed}" is not a number of mg/day (e.g. 4 or 0.5; empty when not known)` };
    }
    dose = Number(typed.replace(',', '.'));
    if (!Number.isFinite(dose)) {
      return { ok: false, error: `steroid dose "${typed}" is not a number` };
    }
  }
  return { ok: true, entry: { status: form.status === '' ? null : form.status, steroid_mg_per_day: dose } };
}

/** Whether the form differs from the stored entry (what Save would change). */
export function formChanged(form: ClinicalForm, stored: ClinicalEntry | null | undefined): boolean {
  const parsed = entryFromForm(form);
  if (!parsed.ok) {
    return true;
  }
  return parsed.entry.status !== (stored?.status ?? null) || parsed.entry.steroid_mg_per_day !== (stored?.steroid_mg_per_day ?? null);
}

/** `YYYY-MM-DD HH:MM` (UTC unless a time zone is given) of the route's `entered_at` (ISO text or epoch seconds). */
export function formatEnteredAt(value: string | number | null | undefined, timeZone?: string): string | null {
  if (value === null || value === undefined || value === '') {
    return null;
  }
  const date = typeof value === 'number' ? new Date(value * 1000) : new Date(value);
  if (Number.isNaN(date.getTime())) {
    return String(value);
  }
  const day = new Intl.DateTimeFormat('en-CA', { year: 'numeric', month: '2-digit', day: '2-digit', ...(timeZone ? { timeZone } : {}) }).format(date);
  return `${day} ${formatClock(date.getTime() / 1000, timeZone).slice(0, 5)}`;
}

/** `entered by dr.x on 2025-01-02 10:11`, or that nothing was entered. */
export function describeEntered(answer: ClinicalStateAnswer | null, timeZone?: string): string {
  if (!answer || (answer.status === null && answer.steroid_mg_per_day === null && !answer.entered_by && !answer.entered_at)) {
    return 'Nothing entered for this visit yet: the response treats clinical status and steroid dose as not known.';
  }
  const at = formatEnteredAt(answer.entered_at, timeZone);
  return `Entered${answer.entered_by ? ` by ${answer.entered_by}` : ''}${at ? ` on ${at}` : ''}.`;
}
