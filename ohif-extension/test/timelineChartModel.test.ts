import { describe, expect, it } from 'vitest';
import { buildTimelineChart, dayNumber, niceCeiling, type ChartPointInput } from '../src/timelineChartModel';

function point(uid: string, date: string, volume: number | null, ci: [number, number] | null): ChartPointInput {
  return { studyInstanceUid: uid, studyDate: date, volumeCm3: volume, ci95Cm3: ci, isFocus: false, isBaseline: false };
}

const series: ChartPointInput[] = [
  point('c', '2024-07-20', 18.5, [17.0, 20.2]),
  point('a', '2024-01-15', 12.345, [11.8, 12.9]),
  point('b', '2024-04-15', 16.02, null),
  point('d', '2024-10-01', 21.4, [19.9, 23.6]),
];

describe('timeline chart geometry', () => {
  it('maps dates monotonically onto x, within the plot', () => {
    const chart = buildTimelineChart(series);
    const xs = chart.points.map((p) => p.x);
    expect(chart.points.map((p) => p.studyInstanceUid)).toEqual(['a', 'b', 'c', 'd']);
    for (let i = 1; i < xs.length; i += 1) {
      expect(xs[i]).toBeGreaterThan(xs[i - 1] as number);
    }
    expect(xs[0]).toBe(chart.plot.left);
    expect(xs[xs.length - 1]).toBe(chart.plot.right);
    // proportional to days: 2024-01-15 -> 2024-04-15 is 91 of 260 days
    const fraction = ((xs[1] as number) - chart.plot.left) / (chart.plot.right - chart.plot.left);
    expect(fraction).toBeCloseTo(91 / 260, 2);
  });

  it('puts every point inside its band, and the band inside the plot', () => {
    const chart = buildTimelineChart(series);
    for (const p of chart.points) {
      expect(p.yUpper).toBeLessThanOrEqual(p.y);
      expect(p.yLower).toBeGreaterThanOrEqual(p.y);
      expect(p.yUpper).toBeGreaterThanOrEqual(chart.plot.top);
      expect(p.yLower).toBeLessThanOrEqual(chart.plot.bottom);
    }
    // larger volume -> higher on screen (smaller SVG y)
    const [a, , , d] = chart.points;
    expect(d?.y).toBeLessThan(a?.y as number);
    expect(chart.yMaxCm3).toBeGreaterThanOrEqual(23.6);
    expect(chart.bandPath.startsWith(`M${chart.points[0]?.x},${chart.points[0]?.yUpper}`)).toBe(true);
    expect(chart.bandPath.endsWith('Z')).toBe(true);
  });

  it('pinches the band to the point where the interval is missing', () => {
    const chart = buildTimelineChart(series);
    const b = chart.points.find((p) => p.studyInstanceUid === 'b');
    expect(b?.ci95Cm3).toBeNull();
    expect(b?.yUpper).toBe(b?.y);
    expect(b?.yLower).toBe(b?.y);
  });

  it('has no band when no point has an interval, and no line for one point', () => {
    const noCi = buildTimelineChart([point('a', '2024-01-15', 10, null), point('b', '2024-02-15', 11, null)]);
    expect(noCi.bandPath).toBe('');
    expect(noCi.linePath).toMatch(/^M[\d.]+,[\d.]+ L[\d.]+,[\d.]+$/);
    const single = buildTimelineChart([point('a', '2024-01-15', 10, [9, 11])]);
    expect(single.linePath).toBe('');
    expect(single.points[0]?.x).toBe((single.plot.left + single.plot.right) / 2);
    expect(single.bandPath).not.toBe('');
  });

  it('leaves out time points without a date or a volume', () => {
    const chart = buildTimelineChart([point('a', '2024-01-15', 10, null), point('x', '2024-02-30', 11, null), point('y', '2024-03-01', null, null)]);
    expect(chart.points.map((p) => p.studyInstanceUid)).toEqual(['a']);
    expect(chart.omitted).toEqual(['x', 'y']);
  });

  it('labels dates without overlap and y from zero', () => {
    const chart = buildTimelineChart(series);
    const positions = chart.xTicks.map((t) => t.position);
    for (let i = 1; i < positions.length; i += 1) {
      expect((positions[i] as number) - (positions[i - 1] as number)).toBeGreaterThanOrEqual(56);
    }
    expect(chart.xTicks[0]?.label).toBe('2024-01-15');
    expect(chart.yTicks[0]).toEqual({ position: chart.plot.bottom, label: '0', anchor: 'end' });
    expect(chart.xTicks.at(-1)?.anchor).toBe('end'); // the last date stays inside the chart
  });
});

describe('wild intervals', () => {
  it('clips an interval far beyond the volumes to the axis and says so, keeping the points inside', () => {
    // random-weight experts: 95% CI of thousands of cm³ around volumes of about 10 cm³
    const chart = buildTimelineChart([point('a', '2024-04-07', 7.887, [-15464.63, 18129.584]), point('b', '2024-07-30', 11.571, [-15745.763, 18470.217])]);
    expect(chart.yMaxCm3).toBe(25); // 2 x 11.571, rounded up: the volumes stay readable
    expect(chart.clippedIntervals).toBe(true);
    for (const p of chart.points) {
      expect(p.ciClipped).toBe(true);
      expect(p.yUpper).toBe(chart.plot.top);
      expect(p.yLower).toBe(chart.plot.bottom);
      expect(p.y).toBeGreaterThan(chart.plot.top);
      expect(p.y).toBeLessThan(chart.plot.bottom);
    }
  });

  it('does not clip ordinary intervals', () => {
    const chart = buildTimelineChart(series);
    expect(chart.clippedIntervals).toBe(false);
  });
});

describe('chart helpers', () => {
  it('reads ISO dates as day numbers', () => {
    expect(dayNumber('1970-01-02')).toBe(1);
    expect((dayNumber('2024-04-15') as number) - (dayNumber('2024-01-15') as number)).toBe(91);
    expect(dayNumber('20240115')).toBeNull();
    expect(dayNumber('2023-02-29')).toBeNull();
  });

  it('rounds the axis up to a nice number', () => {
    expect(niceCeiling(23.6)).toBe(25);
    expect(niceCeiling(0.37)).toBe(0.5);
    expect(niceCeiling(101)).toBe(200);
    expect(niceCeiling(0)).toBe(1);
  });
});

describe('timeline chart: the sum of target lesions', () => {
  const withSums: ChartPointInput[] = [
    { ...point('a', '2024-01-15', 12, null), targetSum: 400 },
    { ...point('b', '2024-04-15', 16, null), targetSum: 520 },
    { ...point('c', '2024-07-15', null, null), targetSum: 610 }, // no volume: left off, its sum too
    { ...point('d', '2024-10-15', 18, null), targetSum: null },
  ];

  it('has no sum line without a unit, or when no point has a sum', () => {
    expect(buildTimelineChart(withSums).targetSum).toBeNull();
    expect(buildTimelineChart(series, undefined, 'mm2').targetSum).toBeNull();
    expect(buildTimelineChart(series).plot.right).toBe(300 - 14); // the layout's margin as before
  });

  it('in mm² gets its own right axis, scaled to the sums, at the volume points’ x', () => {
    const chart = buildTimelineChart(withSums, undefined, 'mm2');
    const sum = chart.targetSum!;
    expect(sum).toMatchObject({ unit: 'mm2', ownAxis: true, yMax: 1000 });
    expect(chart.plot.right).toBe(300 - 36);
    expect(sum.points.map((p) => [p.studyInstanceUid, p.value])).toEqual([['a', 400], ['b', 520]]);
    expect(sum.points.map((p) => p.x)).toEqual(chart.points.slice(0, 2).map((p) => p.x));
    expect(sum.points[1]!.y).toBeLessThan(sum.points[0]!.y); // larger sum higher
    expect(sum.points.every((p) => p.y >= chart.plot.top && p.y <= chart.plot.bottom)).toBe(true);
    expect(sum.ticks.map((t) => t.label)).toEqual(['0', '250', '500', '750', '1000']);
    expect(sum.ticks.every((t) => t.anchor === 'start')).toBe(true);
    expect(sum.linePath).toBe(`M${sum.points[0]!.x},${sum.points[0]!.y} L${sum.points[1]!.x},${sum.points[1]!.y}`);
    expect(chart.yMaxCm3).toBe(20); // the volume axis ignores the mm² sums
  });

  it('in cm³ shares the volume axis, which then reaches the largest sum', () => {
    const chart = buildTimelineChart(
      [
        { ...point('a', '2024-01-15', 12, null), targetSum: 11 },
        { ...point('b', '2024-04-15', 16, null), targetSum: 24 },
      ],
      undefined,
      'cm3',
    );
    expect(chart.targetSum).toMatchObject({ unit: 'cm3', ownAxis: false, ticks: [] });
    expect(chart.targetSum?.yMax).toBe(chart.yMaxCm3);
    expect(chart.yMaxCm3).toBeGreaterThanOrEqual(24);
    expect(chart.plot.right).toBe(300 - 14);
    // same axis: a sum equal to a volume sits at the same height
    const [a] = chart.points;
    const sameAxis = buildTimelineChart([{ ...point('a', '2024-01-15', 12, null), targetSum: 12 }], undefined, 'cm3');
    expect(sameAxis.targetSum?.points[0]?.y).toBe(sameAxis.points[0]?.y);
    expect(a?.y).toBeGreaterThan(chart.targetSum!.points[1]!.y);
  });
});
