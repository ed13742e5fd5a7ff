/** Small pieces the runs list and its preview share. */
import type { RunItem } from "./queries";

/** The run's page (and a span of it selected). */
export function runHref(runId: string, span?: string | null): string {
  return `/runs/view/?id=${runId}${span ? `&span=${span}` : ""}`;
}

export function tokens(r: RunItem): number {
  return r.usage.input_tokens + r.usage.output_tokens;
}

/** A score as a cell shows it: its label, else its value (two decimals when not whole). */
export function scoreText(value: number | null, label: string | null): string {
  if (label) return label;
  if (value === null) return "—";
  return Number.isInteger(value) ? String(value) : value.toFixed(2);
}
