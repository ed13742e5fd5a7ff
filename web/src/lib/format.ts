/**
 * Numbers as the views show them: money, durations, token counts, shares. One place, so that a
 * cost reads the same on the overview, in the runs table and in a run's header.
 */

const usdLarge = new Intl.NumberFormat(undefined, { style: "currency", currency: "USD", maximumFractionDigits: 2 });
const usdSmall = new Intl.NumberFormat(undefined, {
  style: "currency",
  currency: "USD",
  maximumSignificantDigits: 3,
});

/** "$12.40", "$0.0042": cents for sums, three significant digits below a dollar; "—" when unknown. */
export function formatUsd(value: number | string | null | undefined): string {
  if (value === null || value === undefined || value === "") return "—";
  const n = typeof value === "string" ? Number(value) : value;
  if (!Number.isFinite(n)) return "—";
  if (n === 0) return usdLarge.format(0);
  return Math.abs(n) >= 1 ? usdLarge.format(n) : usdSmall.format(n);
}

/** "850 ms", "4.2 s", "3 min 05 s", "2 h 10 min"; "—" when unknown (a run still going). */
export function formatDuration(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return "—";
  if (ms < 1_000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1_000).toFixed(ms < 10_000 ? 2 : 1)} s`;
  const s = Math.round(ms / 1_000);
  if (s < 3_600) return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, "0")} s`;
  const m = Math.round(s / 60);
  return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, "0")} min`;
}

const count = new Intl.NumberFormat(undefined);
const compact = new Intl.NumberFormat(undefined, { notation: "compact", maximumFractionDigits: 1 });

/** "1,234" (or "1.2M" with `short`); "—" when unknown. */
export function formatCount(value: number | null | undefined, short = false): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return "—";
  return short && Math.abs(value) >= 10_000 ? compact.format(value) : count.format(value);
}

/** "12.5%" of a ratio (0.125); "—" when unknown. */
export function formatShare(ratio: number | null | undefined, digits = 1): string {
  if (ratio === null || ratio === undefined || !Number.isFinite(ratio)) return "—";
  return `${(ratio * 100).toFixed(digits)}%`;
}
