import { describe, expect, it, vi } from 'vitest';
import { asClinicalStateAnswer, clinicalStateUrl, createOncoFlowApi, OncoFlowApiError, type FetchFunction } from '../src/api';
import { describeEntered, entryFromForm, formatEnteredAt, formChanged, formFromEntry } from '../src/clinicalState';
import { FOLLOW_UP_UID, response } from './fixtures';

function jsonResponse(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json' } });
}

const STORED = {
  study_instance_uid: FOLLOW_UP_UID,
  status: 'worse',
  steroid_mg_per_day: 8,
  entered_by: 'dr.house',
  entered_at: '2025-01-02T10:11:12Z',
  response: response({ category: 'PD', label: 'PD (preliminary)', confirmation: 'preliminary' }),
};

describe('the clinical-state form', () => {
  it('sends null for what is not entered and a number of mg/day otherwise', () => {
    expect(entryFromForm({ status: '', steroid: '' })).toEqual({ ok: true, entry: { status: null, steroid_mg_per_day: null } });
    expect(entryFromForm({ status: 'stable', steroid: ' 4 ' })).toEqual({ ok: true, entry: { status: 'stable', steroid_mg_per_day: 4 } });
    expect(entryFromForm({ status: 'improved', steroid: '0' })).toEqual({ ok: true, entry: { status: 'improved', steroid_mg_per_day: 0 } });
    expect(entryFromForm({ status: 'worse', steroid: '1,5' })).toEqual({ ok: true, entry: { status: 'worse', steroid_mg_per_day: 1.5 } });
    expect(entryFromForm({ status: 'worse', steroid: '.5' })).toMatchObject({ ok: true, entry: { steroid_mg_per_day: 0.5 } });
  });

  it('refuses a dose that is not a plain non-negative number', () => {
    for (const typed of ['-2', 'four', '1e3', '0x10', '4 mg', '1.2.3']) {
      const parsed = entryFromForm({ status: 'stable', steroid: typed });
      expect(parsed.ok, typed).toBe(false);
      expect(parsed.ok ? '' : parsed.error).toContain(typed);
    }
  });

  it('fills the form from a stored entry and tells when it changed', () => {
    expect(formFromEntry({ status: 'worse', steroid_mg_per_day: 8 })).toEqual({ status: 'worse', steroid: '8' });
    expect(formFromEntry({ status: null, steroid_mg_per_day: null })).toEqual({ status: '', steroid: '' });
    expect(formFromEntry(null)).toEqual({ status: '', steroid: '' });
    expect(formChanged({ status: 'worse', steroid: '8.0' }, { status: 'worse', steroid_mg_per_day: 8 })).toBe(false);
    expect(formChanged({ status: 'stable', steroid: '8' }, { status: 'worse', steroid_mg_per_day: 8 })).toBe(true);
    expect(formChanged({ status: '', steroid: '' }, null)).toBe(false);
    expect(formChanged({ status: '', steroid: 'x' }, null)).toBe(true);
  });

  it('says who entered it and when, or that nothing was entered', () => {
    expect(formatEnteredAt('2025-01-02T10:11:12Z', 'UTC')).toBe('2025-01-02 10:11');
    expect(formatEnteredAt(1_735_812_672, 'UTC')).toBe('2025-01-02 10:11');
    expect(formatEnteredAt('yesterday')).toBe('yesterday');
    expect(formatEnteredAt(null)).toBeNull();
    const answer = asClinicalStateAnswer(STORED, '/x');
    expect(describeEntered(answer, 'UTC')).toBe('Entered by dr.house on 2025-01-02 10:11.');
    const empty = asClinicalStateAnswer({ study_instance_uid: FOLLOW_UP_UID, status: null, steroid_mg_per_day: null, entered_by: null, entered_at: null }, '/x');
    expect(describeEntered(empty)).toContain('Nothing entered');
  });
});

describe('the clinical-state route', () => {
  it('reads an answer field by field', () => {
    const answer = asClinicalStateAnswer(STORED, '/x');
    expect(answer).toMatchObject({ status: 'worse', steroid_mg_per_day: 8, entered_by: 'dr.house' });
    expect(answer.response?.category).toBe('PD');
    // the GET's answer has no response
    expect(asClinicalStateAnswer({ ...STORED, response: undefined }, '/x').response).toBeNull();
  });

  it('refuses an answer of another shape', () => {
    const bad = [
      null,
      [],
      { ...STORED, study_instance_uid: '' },
      { ...STORED, status: 'better' },
      { ...STORED, steroid_mg_per_day: '8' },
      { ...STORED, entered_by: 7 },
      { ...STORED, entered_at: {} },
      { ...STORED, response: { label: 'no category' } },
    ];
    for (const body of bad) {
      expect(() => asClinicalStateAnswer(body, '/x'), JSON.stringify(body)).toThrow(OncoFlowApiError);
    }
  });

  it('GETs and PUTs /oncoflow/studies/{uid}/clinical-state with the JSON body of the spec', async () => {
    const fetch = vi.fn<FetchFunction>(async (_url, init) =>
      init?.method === 'PUT' ? jsonResponse(200, STORED) : jsonResponse(200, { ...STORED, status: null, steroid_mg_per_day: null, entered_by: null, entered_at: null }),
    );
    const api = createOncoFlowApi({ fetch, headers: () => ({ Authorization: 'Bearer t' }) });
    expect(clinicalStateUrl('', '1.2.3')).toBe('/oncoflow/studies/1.2.3/clinical-state');
    expect((await api.clinicalState(FOLLOW_UP_UID)).status).toBeNull();
    const saved = await api.saveClinicalState(FOLLOW_UP_UID, { status: 'worse', steroid_mg_per_day: 8 });
    expect(saved.response?.label).toBe('PD (preliminary)');
    const [url, init] = fetch.mock.calls[1] ?? [];
    expect(url).toBe(`/oncoflow/studies/${FOLLOW_UP_UID}/clinical-state`);
    expect(init?.method).toBe('PUT');
    expect(JSON.parse(String(init?.body))).toEqual({ status: 'worse', steroid_mg_per_day: 8 });
    const headers = init?.headers as Record<string, string>;
    expect(headers['Content-Type']).toBe('application/json');
    expect(headers.Authorization).toBe('Bearer t');
    await api.saveClinicalState(FOLLOW_UP_UID, { status: null, steroid_mg_per_day: null });
    expect(JSON.parse(String(fetch.mock.calls[2]?.[1]?.body))).toEqual({ status: null, steroid_mg_per_day: null });
  });

  it('rejects with the route’s error on 4xx', async () => {
    const fetch = vi.fn<FetchFunction>(async () =>
      jsonResponse(400, { error: 'steroid_mg_per_day must be between 0 and 100 (dexamethasone-equivalent mg/day), not 400' }),
    );
    const api = createOncoFlowApi({ fetch });
    const error = await api.saveClinicalState(FOLLOW_UP_UID, { status: 'stable', steroid_mg_per_day: 400 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(OncoFlowApiError);
    expect(error).toMatchObject({ status: 400, message: expect.stringContaining('between 0 and 100') });
  });
});
