/**
 * How the benchmarks report a repeated figure: its median and its spread (min–max), since
 * the machine is shared and noisy.
 */

export interface Spread {
  median: number;
  min: number;
  max: number;
}

/** The median (the upper one of an even count) and the extremes of `xs` (not empty). */
export function spread(xs: readonly number[]): Spread {
  const s = [...xs].sort((a, b) => a - b);
  return { median: s[Math.floor(s.length / 2)]!, min: s[0]!, max: s[s.length - 1]! };
}

/** `median (min–max)` with `digits` decimals. */
export function formatSpread(x: Spread, digits = 0): string {
  return `${x.median.toFixed(digits)} (${x.min.toFixed(digits)}–${x.max.toFixed(digits)})`;
}
