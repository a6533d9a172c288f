/**
 * Sample-ratio check of SPEC.md: Pearson's chi-square of observed counts against the shares the
 * weights promise, and its p-value. Variants with zero weight take no part, neither their cells
 * nor their units (units can only sit there from before a weight change); p < 0.001 is a sample
 * ratio mismatch.
 */
export const SRM_THRESHOLD = 0.001;

export interface SampleRatio {
  chiSquare: number;
  degreesOfFreedom: number;
  pValue: number;
  mismatch: boolean;
}

export function sampleRatio(observed: readonly number[], weights: readonly number[]): SampleRatio {
  const total = observed.reduce((a, b, i) => (weights[i]! > 0 ? a + b : a), 0);
  const weightTotal = weights.reduce((a, b) => a + b, 0);
  let chiSquare = 0;
  let cells = 0;
  for (let i = 0; i < observed.length; i++) {
    const weight = weights[i]!;
    if (weight <= 0) continue;
    cells++;
    const expected = (total * weight) / weightTotal;
    if (expected > 0) chiSquare += (observed[i]! - expected) ** 2 / expected;
  }
  const degreesOfFreedom = Math.max(cells - 1, 0);
  const pValue = total === 0 || degreesOfFreedom === 0 ? 1 : chiSquareSurvival(chiSquare, degreesOfFreedom);
  return { chiSquare, degreesOfFreedom, pValue, mismatch: pValue < SRM_THRESHOLD };
}

/** P(X >= x) for X ~ chi-square(k) = Q(k/2, x/2), the regularized upper incomplete gamma. */
export function chiSquareSurvival(x: number, k: number): number {
  if (x <= 0) return 1;
  return upperRegularizedGamma(k / 2, x / 2);
}

// Numerical Recipes 6.2: series for x < a + 1, continued fraction (modified Lentz) otherwise.
function upperRegularizedGamma(a: number, x: number): number {
  if (x < a + 1) return 1 - lowerSeries(a, x);
  return upperContinuedFraction(a, x);
}

function lowerSeries(a: number, x: number): number {
  let sum = 1 / a;
  let term = sum;
  for (let n = 1; n < 10_000; n++) {
    term *= x / (a + n);
    sum += term;
    if (Math.abs(term) < Math.abs(sum) * 1e-15) break;
  }
  return sum * Math.exp(-x + a * Math.log(x) - logGamma(a));
}

function upperContinuedFraction(a: number, x: number): number {
  const tiny = 1e-300;
  let b = x + 1 - a;
  let c = 1 / tiny;
  let d = 1 / b;
  let h = d;
  for (let i = 1; i < 10_000; i++) {
    const an = -i * (i - a);
    b += 2;
    d = an * d + b;
    if (Math.abs(d) < tiny) d = tiny;
    c = b + an / c;
    if (Math.abs(c) < tiny) c = tiny;
    d = 1 / d;
    const delta = d * c;
    h *= delta;
    if (Math.abs(delta - 1) < 1e-15) break;
  }
  return Math.exp(-x + a * Math.log(x) - logGamma(a)) * h;
}

// Lanczos approximation (g = 7, n = 9).
const LANCZOS = [
  0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059, 12.507343278686905,
  -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7,
];

function logGamma(z: number): number {
  if (z < 0.5) return Math.log(Math.PI / Math.sin(Math.PI * z)) - logGamma(1 - z);
  z -= 1;
  let x = LANCZOS[0]!;
  for (let i = 1; i < 9; i++) x += LANCZOS[i]! / (z + i);
  const t = z + 7.5;
  return 0.5 * Math.log(2 * Math.PI) + (z + 0.5) * Math.log(t) - t + Math.log(x);
}
