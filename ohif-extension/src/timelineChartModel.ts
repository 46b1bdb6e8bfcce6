/**
 * Geometry of the volume timeline chart, in SVG user units: one point per time point
 * (x from its study date, y from its fused volume), a line through them, and the band of
 * each point's 95 % interval (`volume_ci95_cm3`). Pure: the component only draws it.
 *
 * The y axis starts at 0 and reaches the largest volume and interval, but at most
 * `CI_AXIS_FACTOR` times the largest volume: a wild interval (experts that disagree by
 * thousands of cm³) is clipped to the plot and flagged, so the volumes stay readable.
 *
 * A second line, optional, is the sum of the target lesions per visit (the response's `target_sum`, RANO's
 * SPD or volume sum). In cm³ it shares the volume axis; in mm² or mm it gets its own axis on the right.
 */

import type { Interval } from './api';

export interface ChartPointInput {
  studyInstanceUid: string;
  /** `YYYY-MM-DD`. */
  studyDate: string;
  volumeCm3: number | null;
  ci95Cm3: Interval | null;
  isFocus: boolean;
  isBaseline: boolean;
  /** Sum of the target lesions at this visit, in the series' unit; null or absent when not known. */
  targetSum?: number | null;
}

export interface ChartPoint {
  studyInstanceUid: string;
  studyDate: string;
  volumeCm3: number;
  ci95Cm3: Interval | null;
  x: number;
  y: number;
  /** SVG y of the interval's upper bound (<= y); equals y without an interval. */
  yUpper: number;
  /** SVG y of the interval's lower bound (>= y); equals y without an interval. */
  yLower: number;
  /** The interval reaches beyond the axis (above its top or below 0) and is drawn clipped. */
  ciClipped: boolean;
  isFocus: boolean;
  isBaseline: boolean;
}

export interface ChartTick {
  position: number;
  label: string;
  /** SVG `text-anchor`: labels at the plot's ends are kept inside the chart. */
  anchor: 'start' | 'middle' | 'end';
}

export interface ChartBox {
  left: number;
  right: number;
  top: number;
  bottom: number;
}

export interface SumPoint {
  studyInstanceUid: string;
  studyDate: string;
  value: number;
  x: number;
  y: number;
}

/** The target-lesion sum line. */
export interface SumSeries {
  /** `cm3`, `mm2` or `mm` (the response's unit). */
  unit: string;
  /** True when it has its own axis (right); false when it shares the volume axis (cm³). */
  ownAxis: boolean;
  /** Top of its axis, in its unit (the volume axis' top when shared). */
  yMax: number;
  /** Right-hand axis labels; empty when the axis is shared. */
  ticks: ChartTick[];
  points: SumPoint[];
  /** SVG path through the points in date order ('' with fewer than two). */
  linePath: string;
}

export interface TimelineChartModel {
  width: number;
  height: number;
  plot: ChartBox;
  points: ChartPoint[];
  /** SVG path through the points in date order ('' with fewer than two). */
  linePath: string;
  /** Closed SVG path of the interval band ('' when no point has an interval). */
  bandPath: string;
  xTicks: ChartTick[];
  yTicks: ChartTick[];
  yMaxCm3: number;
  /** Some interval is clipped to the axis. */
  clippedIntervals: boolean;
  /** Time points left out: no date or no volume (e.g. a failed time point). */
  omitted: string[];
  /** The target-lesion sum line; null when no drawn point has a sum. */
  targetSum: SumSeries | null;
}

export interface ChartLayout {
  width: number;
  height: number;
  margin: { top: number; right: number; bottom: number; left: number };
}

export const DEFAULT_CHART_LAYOUT: ChartLayout = {
  width: 300,
  height: 150,
  margin: { top: 10, right: 14, bottom: 26, left: 42 },
};

const DAY_MS = 86_400_000;

/** Right margin with a sum axis of its own (room for its labels). */
export const SUM_AXIS_MARGIN = 36;

/** The axis reaches at most this many times the largest volume, however wide an interval. */
export const CI_AXIS_FACTOR = 2;

/** Days since 1970-01-01 of a `YYYY-MM-DD` date, or null when it is not one. */
export function dayNumber(isoDate: string): number | null {
  const match = /^(\d{4})-(\d{2})-(\d{2})$/.exec(isoDate);
  if (!match) {
    return null;
  }
  const [, year, month, day] = match;
  const ms = Date.UTC(Number(year), Number(month) - 1, Number(day));
  const back = new Date(ms);
  if (back.getUTCMonth() !== Number(month) - 1 || back.getUTCDate() !== Number(day)) {
    return null;
  }
  return Math.round(ms / DAY_MS);
}

/** The smallest "nice" number (1, 2, 2.5 or 5 times a power of ten) >= value. */
export function niceCeiling(value: number): number {
  if (!(value > 0)) {
    return 1;
  }
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) {
    if (step * power >= value - 1e-12) {
      return step * power;
    }
  }
  return 10 * power;
}

function round2(value: number): number {
  return Math.round(value * 100) / 100;
}

function tickLabel(value: number, step: number): string {
  const decimals = step >= 1 ? 0 : step >= 0.1 ? 1 : 2;
  return value.toFixed(decimals);
}

function isFiniteNumber(value: number | null | undefined): value is number {
  return typeof value === 'number' && Number.isFinite(value);
}

/**
 * `sumUnit`: the unit of the inputs' `targetSum` (`cm3` shares the volume axis); without it, or when no
 * drawn point has a sum, there is no sum line.
 */
export function buildTimelineChart(
  inputs: readonly ChartPointInput[],
  layout: ChartLayout = DEFAULT_CHART_LAYOUT,
  sumUnit: string | null = null,
): TimelineChartModel {
  const usable: Array<ChartPointInput & { day: number; volumeCm3: number }> = [];
  const omitted: string[] = [];
  for (const input of inputs) {
    const day = dayNumber(input.studyDate);
    if (day === null || input.volumeCm3 === null || !Number.isFinite(input.volumeCm3)) {
      omitted.push(input.studyInstanceUid);
      continue;
    }
    usable.push({ ...input, day, volumeCm3: input.volumeCm3 });
  }
  usable.sort((a, b) => a.day - b.day);

  const withSum = sumUnit ? usable.filter((p) => isFiniteNumber(p.targetSum)) : [];
  const sumShared = sumUnit === 'cm3';
  const sumOwnAxis = withSum.length > 0 && !sumShared;
  const plot: ChartBox = {
    left: layout.margin.left,
    right: layout.width - (sumOwnAxis ? Math.max(layout.margin.right, SUM_AXIS_MARGIN) : layout.margin.right),
    top: layout.margin.top,
    bottom: layout.height - layout.margin.bottom,
  };

  const largestSharedSum = sumShared ? withSum.reduce((max, p) => Math.max(max, p.targetSum as number), 0) : 0;
  const largestVolume = usable.reduce((max, p) => Math.max(max, p.volumeCm3), 0);
  const largestBound = usable.reduce((max, p) => Math.max(max, p.ci95Cm3 ? p.ci95Cm3[1] : 0), 0);
  const axisTarget = Math.max(
    largestVolume,
    largestSharedSum,
    Math.min(largestBound, Math.max(largestVolume, largestSharedSum) * CI_AXIS_FACTOR),
  );
  const yMaxCm3 = niceCeiling(axisTarget * 1.05);
  const clamp = (cm3: number): number => Math.min(Math.max(0, cm3), yMaxCm3);
  const yOf = (cm3: number): number => round2(plot.bottom - (clamp(cm3) / yMaxCm3) * (plot.bottom - plot.top));

  const firstDay = usable[0]?.day ?? 0;
  const lastDay = usable[usable.length - 1]?.day ?? 0;
  const span = lastDay - firstDay;
  const xOf = (day: number): number =>
    span === 0 ? round2((plot.left + plot.right) / 2) : round2(plot.left + ((day - firstDay) / span) * (plot.right - plot.left));

  const points: ChartPoint[] = usable.map((p) => {
    const y = yOf(p.volumeCm3);
    const low = p.ci95Cm3 ? Math.min(p.ci95Cm3[0], p.volumeCm3) : p.volumeCm3;
    const high = p.ci95Cm3 ? Math.max(p.ci95Cm3[1], p.volumeCm3) : p.volumeCm3;
    return {
      ciClipped: low < 0 || high > yMaxCm3,
      studyInstanceUid: p.studyInstanceUid,
      studyDate: p.studyDate,
      volumeCm3: p.volumeCm3,
      ci95Cm3: p.ci95Cm3,
      x: xOf(p.day),
      y,
      yUpper: yOf(high),
      yLower: yOf(low),
      isFocus: p.isFocus,
      isBaseline: p.isBaseline,
    };
  });

  const linePath =
    points.length < 2 ? '' : points.map((p, i) => `${i === 0 ? 'M' : 'L'}${p.x},${p.y}`).join(' ');
  const bandPath = points.some((p) => p.ci95Cm3 !== null) ? bandOutline(points) : '';

  const yStep = yMaxCm3 / 4;
  const yTicks: ChartTick[] = [0, 1, 2, 3, 4].map((i) => ({
    position: yOf(i * yStep),
    label: tickLabel(i * yStep, yStep),
    anchor: 'end',
  }));
  const xTicks: ChartTick[] = dateTicks(points, layout.width);

  let targetSum: SumSeries | null = null;
  if (sumUnit && withSum.length) {
    const sumMax = sumShared ? yMaxCm3 : niceCeiling(withSum.reduce((max, p) => Math.max(max, p.targetSum as number), 0) * 1.05);
    const ySum = (value: number): number =>
      round2(plot.bottom - (Math.min(Math.max(0, value), sumMax) / sumMax) * (plot.bottom - plot.top));
    const sumPoints: SumPoint[] = withSum.map((p) => ({
      studyInstanceUid: p.studyInstanceUid,
      studyDate: p.studyDate,
      value: p.targetSum as number,
      x: xOf(p.day),
      y: ySum(p.targetSum as number),
    }));
    const sumStep = sumMax / 4;
    targetSum = {
      unit: sumUnit,
      ownAxis: !sumShared,
      yMax: sumMax,
      ticks: sumShared
        ? []
        : [0, 1, 2, 3, 4].map((i) => ({ position: ySum(i * sumStep), label: tickLabel(i * sumStep, sumStep), anchor: 'start' as const })),
      points: sumPoints,
      linePath: sumPoints.length < 2 ? '' : sumPoints.map((p, i) => `${i === 0 ? 'M' : 'L'}${p.x},${p.y}`).join(' '),
    };
  }

  return {
    width: layout.width,
    height: layout.height,
    plot,
    points,
    linePath,
    bandPath,
    xTicks,
    yTicks,
    yMaxCm3,
    clippedIntervals: points.some((p) => p.ciClipped),
    omitted,
    targetSum,
  };
}

/** Upper bounds left to right, then lower bounds right to left; a lone point gets a short bar. */
function bandOutline(points: readonly ChartPoint[]): string {
  if (points.length === 1) {
    const [p] = points as [ChartPoint];
    const half = 4;
    return `M${p.x - half},${p.yUpper} L${p.x + half},${p.yUpper} L${p.x + half},${p.yLower} L${p.x - half},${p.yLower} Z`;
  }
  const upper = points.map((p, i) => `${i === 0 ? 'M' : 'L'}${p.x},${p.yUpper}`);
  const lower = [...points].reverse().map((p) => `L${p.x},${p.yLower}`);
  return `${upper.join(' ')} ${lower.join(' ')} Z`;
}

/** Minimum distance between two date labels (a `YYYY-MM-DD` label is about 50 units wide). */
const MIN_DATE_TICK_SPACING = 56;
const HALF_DATE_LABEL = 26;

/** Date labels for the first, the last and the focus point, then the others, none overlapping. */
function dateTicks(points: readonly ChartPoint[], width: number): ChartTick[] {
  const last = points.length - 1;
  const priority = (p: ChartPoint, i: number): number => (i === 0 || i === last ? 0 : p.isFocus ? 1 : 2);
  const ordered = points.map((p, i) => ({ p, rank: priority(p, i) })).sort((a, b) => a.rank - b.rank);
  const ticks: ChartTick[] = [];
  for (const { p } of ordered) {
    if (ticks.every((t) => Math.abs(t.position - p.x) >= MIN_DATE_TICK_SPACING)) {
      const anchor = p.x - HALF_DATE_LABEL < 0 ? 'start' : p.x + HALF_DATE_LABEL > width ? 'end' : 'middle';
      ticks.push({ position: p.x, label: p.studyDate, anchor });
    }
  }
  return ticks.sort((a, b) => a.position - b.position);
}
