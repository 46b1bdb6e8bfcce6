import { describe, expect, it, vi } from 'vitest';
import {
  createOncoFlowApi,
  OncoFlowApiError,
  pathSegment,
  reanalyseUrl,
  refineUrl,
  reportPdfUrl,
  studyJobUrl,
  timelineUrl,
  type FetchFunction,
} from '../src/api';
import { doneJob, FOLLOW_UP_UID, timeline } from './fixtures';

function jsonResponse(status: number, body: unknown): Response {
  return new Response(typeof body === 'string' ? body : JSON.stringify(body), {
    status,
    headers: { 'Content-Type': 'application/json' },
  });
}

describe('URL building', () => {
  it('builds the study routes on the same origin by default', () => {
    expect(studyJobUrl('', '1.2.3')).toBe('/oncoflow/studies/1.2.3');
    expect(reanalyseUrl('', '1.2.3')).toBe('/oncoflow/studies/1.2.3/reanalyse');
    expect(refineUrl('', '1.2.3')).toBe('/oncoflow/studies/1.2.3/refine');
    expect(reportPdfUrl('', '1.2.9')).toBe('/oncoflow/reports/1.2.9.pdf');
  });

  it('percent-encodes a PatientID with spaces and slashes as one path segment', () => {
    expect(timelineUrl('', 'ONC 001/A')).toBe('/oncoflow/patients/ONC%20001%2FA/timeline');
    expect(timelineUrl('', 'a?b#c%d')).toBe('/oncoflow/patients/a%3Fb%23c%25d/timeline');
    expect(timelineUrl('', 'Müller^Jörg')).toBe('/oncoflow/patients/M%C3%BCller%5EJ%C3%B6rg/timeline');
    expect(decodeURIComponent(pathSegment('x/../y'))).toBe('x/../y');
    expect(pathSegment('x/../y')).not.toContain('/');
  });

  it('joins a configured base without doubling slashes', () => {
    expect(studyJobUrl('https://pacs.example/', '1.2')).toBe('https://pacs.example/oncoflow/studies/1.2');
    expect(timelineUrl('/orthanc//', 'P1')).toBe('/orthanc/oncoflow/patients/P1/timeline');
  });
});

describe('OncoFlow API client', () => {
  it('answers the job, and null for a 404 {error}', async () => {
    const fetch = vi.fn<FetchFunction>(async (url) =>
      url.endsWith(FOLLOW_UP_UID) ? jsonResponse(200, doneJob()) : jsonResponse(404, { error: 'no OncoFlow job for study 9.9' }),
    );
    const api = createOncoFlowApi({ fetch });
    expect((await api.studyJob(FOLLOW_UP_UID))?.state).toBe('done');
    expect(await api.studyJob('9.9')).toBeNull();
    expect(fetch.mock.calls[0]?.[1]?.method).toBe('GET');
  });

  it('answers the timeline of an encoded PatientID', async () => {
    const fetch = vi.fn<FetchFunction>(async () => jsonResponse(200, timeline()));
    const api = createOncoFlowApi({ fetch, baseUrl: '' });
    const answer = await api.patientTimeline('ONC 001/A');
    expect(answer?.time_points).toHaveLength(2);
    expect(fetch.mock.calls[0]?.[0]).toBe('/oncoflow/patients/ONC%20001%2FA/timeline');
  });

  it('posts the refine body and sends extra headers', async () => {
    const fetch = vi.fn<FetchFunction>(async () =>
      jsonResponse(200, { version: 2, sop_instance_uid: '1.2.5', series_instance_uid: '1.2.4', volume_cm3: 15.2 }),
    );
    const api = createOncoFlowApi({ fetch, headers: () => ({ Authorization: 'Bearer t0k' }) });
    const result = await api.refine(FOLLOW_UP_UID, {
      points: [{ position_mm: [1.5, -20.25, 33], positive: true }],
      include_current: true,
    });
    expect(result).toMatchObject({ version: 2, sop_instance_uid: '1.2.5' });
    const [url, init] = fetch.mock.calls[0] ?? [];
    expect(url).toBe(`/oncoflow/studies/${FOLLOW_UP_UID}/refine`);
    expect(init?.method).toBe('POST');
    expect(JSON.parse(String(init?.body))).toEqual({
      points: [{ position_mm: [1.5, -20.25, 33], positive: true }],
      include_current: true,
    });
    const headers = init?.headers as Record<string, string>;
    expect(headers.Authorization).toBe('Bearer t0k');
    expect(headers['Content-Type']).toBe('application/json');
  });

  it('turns a 503 {error} into an OncoFlowApiError with the route message', async () => {
    const fetch = vi.fn<FetchFunction>(async () => jsonResponse(503, { error: 'no promptable expert (SAM2) is ready' }));
    const api = createOncoFlowApi({ fetch });
    const failure = api.refine('1.2', { points: [{ position_mm: [0, 0, 0], positive: true }], include_current: true });
    await expect(failure).rejects.toBeInstanceOf(OncoFlowApiError);
    await expect(failure).rejects.toMatchObject({ status: 503, message: 'no promptable expert (SAM2) is ready' });
  });

  it('accepts 202 from reanalyse and reports 409', async () => {
    const responses = [jsonResponse(202, { job_id: 12, state: 'queued' }), jsonResponse(409, { error: 'a job of this study is already queued' })];
    const fetch = vi.fn<FetchFunction>(async () => responses.shift() as Response);
    const api = createOncoFlowApi({ fetch });
    expect(await api.reanalyse('1.2')).toEqual({ job_id: 12, state: 'queued' });
    await expect(api.reanalyse('1.2')).rejects.toMatchObject({ status: 409, message: 'a job of this study is already queued' });
  });

  it('rejects a 200 that is not a job', async () => {
    const fetch = vi.fn<FetchFunction>(async () => jsonResponse(200, '<html>login</html>'));
    await expect(createOncoFlowApi({ fetch }).studyJob('1.2')).rejects.toBeInstanceOf(OncoFlowApiError);
  });

  it('links the signed PDF by its SOP Instance UID', () => {
    expect(createOncoFlowApi({ baseUrl: '' }).reportPdfUrl('1.2.840.1')).toBe('/oncoflow/reports/1.2.840.1.pdf');
  });
});

describe('OncoFlow API client with the viewer signed in', () => {
  const pdfBytes = '%PDF-1.4\n%oncoflow\n';

  function routes(): ReturnType<typeof vi.fn<FetchFunction>> {
    return vi.fn<FetchFunction>(async (url, init) => {
      if (url.endsWith('/timeline')) return jsonResponse(200, timeline());
      if (url.endsWith('/reanalyse')) return jsonResponse(202, { job_id: 3, state: 'queued' });
      if (url.endsWith('/refine')) return jsonResponse(200, { version: 1, sop_instance_uid: '1.2.7' });
      if (url.endsWith('.pdf')) {
        return new Response(pdfBytes, { status: 200, headers: { 'Content-Type': 'application/pdf' } });
      }
      expect(init?.method).toBe('GET');
      return jsonResponse(200, doneJob());
    });
  }

  it('sends the Authorization header on every route, the report PDF included', async () => {
    const fetch = routes();
    const api = createOncoFlowApi({ fetch, headers: () => ({ Authorization: 'Bearer abc.def.ghi' }) });
    await api.studyJob(FOLLOW_UP_UID);
    await api.patientTimeline('ONC 001/A');
    await api.reanalyse(FOLLOW_UP_UID);
    await api.refine(FOLLOW_UP_UID, { points: [{ position_mm: [0, 0, 0], positive: true }], include_current: true });
    const pdf = await api.reportPdf('1.2.840.9');
    expect(fetch.mock.calls.map(([url]) => url)).toEqual([
      `/oncoflow/studies/${FOLLOW_UP_UID}`,
      '/oncoflow/patients/ONC%20001%2FA/timeline',
      `/oncoflow/studies/${FOLLOW_UP_UID}/reanalyse`,
      `/oncoflow/studies/${FOLLOW_UP_UID}/refine`,
      '/oncoflow/reports/1.2.840.9.pdf',
    ]);
    for (const [url, init] of fetch.mock.calls) {
      expect((init?.headers as Record<string, string>).Authorization, url).toBe('Bearer abc.def.ghi');
    }
    const [, pdfInit] = fetch.mock.calls[4] ?? [];
    expect((pdfInit?.headers as Record<string, string>).Accept).toBe('application/pdf');
    expect(pdf.type).toBe('application/pdf');
    expect(await pdf.text()).toBe(pdfBytes);
    expect(api.sendsAuthorization()).toBe(true);
  });

  it('asks for the header at each request (OHIF renews the token)', async () => {
    const fetch = routes();
    let token = 'first';
    const api = createOncoFlowApi({ fetch, headers: () => ({ Authorization: `Bearer ${token}` }) });
    await api.studyJob(FOLLOW_UP_UID);
    token = 'renewed';
    await api.reportPdf('1.2.840.9');
    const sent = fetch.mock.calls.map(([, init]) => (init?.headers as Record<string, string>).Authorization);
    expect(sent).toEqual(['Bearer first', 'Bearer renewed']);
  });

  it('sends no Authorization header while OHIF has none (signed out, or no OIDC)', async () => {
    const fetch = routes();
    const api = createOncoFlowApi({ fetch, headers: () => undefined });
    await api.studyJob(FOLLOW_UP_UID);
    await api.reportPdf('1.2.840.9');
    for (const [, init] of fetch.mock.calls) {
      expect(Object.keys(init?.headers as Record<string, string>)).not.toContain('Authorization');
    }
    expect(api.sendsAuthorization()).toBe(false);
    expect(createOncoFlowApi({ fetch }).sendsAuthorization()).toBe(false);
  });

  it('rejects a refused report (403 {error}) and an answer that is not a PDF', async () => {
    const answers = [
      jsonResponse(403, { error: 'patient not assigned to this user' }),
      new Response('<html>login</html>', { status: 200, headers: { 'Content-Type': 'text/html' } }),
    ];
    const fetch = vi.fn<FetchFunction>(async () => answers.shift() as Response);
    const api = createOncoFlowApi({ fetch, headers: () => ({ Authorization: 'Bearer x' }) });
    await expect(api.reportPdf('1.2.3')).rejects.toMatchObject({ status: 403, message: 'patient not assigned to this user' });
    await expect(api.reportPdf('1.2.3')).rejects.toMatchObject({ status: 200, message: expect.stringContaining('text/html') });
  });
});
