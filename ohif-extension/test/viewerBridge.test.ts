import { describe, expect, it } from 'vitest';
import { planViewportLinks, rowMajorToColumnMajor, studyUidsFromSearch } from '../src/viewerBridge';
import { BASELINE_UID, FOLLOW_UP_TO_BASELINE, FOLLOW_UP_UID, timeline } from './fixtures';

describe('studyUidsFromSearch', () => {
  it('reads StudyInstanceUIDs in URL order, comma separated or repeated', () => {
    expect(studyUidsFromSearch(`?StudyInstanceUIDs=${FOLLOW_UP_UID},${BASELINE_UID}`)).toEqual([FOLLOW_UP_UID, BASELINE_UID]);
    expect(studyUidsFromSearch(`?StudyInstanceUIDs=1.2&StudyInstanceUIDs=1.3&studyInstanceUIDs=1.2`)).toEqual(['1.2', '1.3']);
    expect(studyUidsFromSearch('?StudyInstanceUIDs=1.2%2C1.3&hangingProtocolId=x')).toEqual(['1.2', '1.3']);
    expect(studyUidsFromSearch('')).toEqual([]);
  });
});

describe('viewport links', () => {
  it('transposes a row-major matrix into gl-matrix order', () => {
    const m = rowMajorToColumnMajor(FOLLOW_UP_TO_BASELINE);
    // translation sits in elements 12..14 in column-major order
    expect(m.slice(12, 15)).toEqual([4, 0, -2]);
    expect(m[3]).toBe(0);
    expect(() => rowMajorToColumnMajor([1, 2, 3])).toThrow();
  });

  it('links the baseline viewport (target) to the follow-up viewport (source)', () => {
    const links = planViewportLinks(
      [
        { viewportId: 'left', studyInstanceUid: BASELINE_UID },
        { viewportId: 'right', studyInstanceUid: FOLLOW_UP_UID },
      ],
      timeline(),
    );
    expect(links).toHaveLength(1);
    expect(links[0]).toMatchObject({ targetViewportId: 'left', sourceViewportId: 'right' });
    expect(links[0]?.matrixColumnMajor.slice(12, 15)).toEqual([4, 0, -2]);
  });

  it('links nothing without a comparison or with one study shown', () => {
    expect(planViewportLinks([{ viewportId: 'a', studyInstanceUid: FOLLOW_UP_UID }], timeline())).toEqual([]);
    expect(planViewportLinks([{ viewportId: 'a', studyInstanceUid: FOLLOW_UP_UID }, { viewportId: 'b', studyInstanceUid: BASELINE_UID }], null)).toEqual([]);
  });
});
