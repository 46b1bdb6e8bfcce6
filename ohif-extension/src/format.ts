/**
 * Text for the panel's numbers. Formatting only: every value comes from OncoFlow's routes,
 * nothing is computed again here.
 */

export const MISSING = '—';

function isNumber(value: number | null | undefined): value is number {
  return typeof value === 'number' && Number.isFinite(value);
}

export function formatFixed(value: number | null | undefined, decimals: number): string {
  return isNumber(value) ? value.toFixed(decimals) : MISSING;
}

/** `12.35 cm³`. */
export function formatVolume(value: number | null | undefined): string {
  return isNumber(value) ? `${value.toFixed(2)} cm³` : MISSING;
}

/** `+12.3 %` (the sign always shown). */
export function formatPercent(value: number | null | undefined): string {
  if (!isNumber(value)) {
    return MISSING;
  }
  const sign = value > 0 ? '+' : value < 0 ? '−' : '±';
  return `${sign}${Math.abs(value).toFixed(1)} %`;
}

/** `+3.40 cm³`. */
export function formatSignedVolume(value: number | null | undefined): string {
  if (!isNumber(value)) {
    return MISSING;
  }
  const sign = value > 0 ? '+' : value < 0 ? '−' : '±';
  return `${sign}${Math.abs(value).toFixed(2)} cm³`;
}

/** `[lo, hi]` with a formatter for each bound, or null when there is no interval. */
export function formatInterval(
  interval: readonly [number, number] | null | undefined,
  format: (value: number) => string,
): string | null {
  if (!interval || !isNumber(interval[0]) || !isNumber(interval[1])) {
    return null;
  }
  return `${format(interval[0])} to ${format(interval[1])}`;
}

/** Dice / IoU / NCC: three decimals. */
export function formatRatio(value: number | null | undefined): string {
  return formatFixed(value, 3);
}

export function formatMillimetres(value: number | null | undefined): string {
  return isNumber(value) ? `${value.toFixed(1)} mm` : MISSING;
}

/** `412.5 mm²`. */
export function formatArea(value: number | null | undefined): string {
  return isNumber(value) ? `${value.toFixed(1)} mm²` : MISSING;
}

/** A sum of target lesions in the response's unit (`cm3`, `mm2` or `mm`). */
export function formatInUnit(value: number | null | undefined, unit: string): string {
  switch (unit) {
    case 'cm3':
      return formatVolume(value);
    case 'mm2':
      return formatArea(value);
    case 'mm':
      return formatMillimetres(value);
    default:
      return isNumber(value) ? `${value} ${unit}` : MISSING;
  }
}

/** The response's unit as text: `cm³`, `mm²`, `mm`. */
export function unitText(unit: string): string {
  return unit === 'cm3' ? 'cm³' : unit === 'mm2' ? 'mm²' : unit;
}

export function formatSeconds(value: number | null | undefined): string {
  if (!isNumber(value)) {
    return MISSING;
  }
  return value < 10 ? `${value.toFixed(2)} s` : `${value.toFixed(1)} s`;
}

export function formatDays(value: number | null | undefined): string {
  return isNumber(value) ? `${value.toFixed(0)} d` : MISSING;
}

/** `+0.0123 cm³/day`. */
export function formatGrowthRate(value: number | null | undefined): string {
  if (!isNumber(value)) {
    return MISSING;
  }
  const sign = value > 0 ? '+' : value < 0 ? '−' : '±';
  return `${sign}${Math.abs(value).toFixed(4)} cm³/d`;
}

/** `14:03:27` for epoch seconds, in `timeZone` (the browser's when omitted). */
export function formatClock(epochSeconds: number, timeZone?: string): string {
  if (!isNumber(epochSeconds)) {
    return MISSING;
  }
  return new Intl.DateTimeFormat('en-GB', {
    hour: '2-digit',
    minute: '2-digit',
    second: '2-digit',
    hourCycle: 'h23',
    ...(timeZone ? { timeZone } : {}),
  }).format(new Date(epochSeconds * 1000));
}

/** A route's raw number as the `data-value` attribute carries it ('' when absent). */
export function rawValue(value: number | string | null | undefined): string {
  return value === null || value === undefined ? '' : String(value);
}
