/**
 * Where each number of the overview leads: the filtered list behind it, with the filter names the
 * runs list shares with GET /v1/runs (status, agent, since, until, ...), the approvals tab, the evals.
 */

const HOUR_MS = 3_600_000;

/** An RFC 3339 time to the second ("…T07:00:00Z"): shorter URLs, the same runs. */
export function urlTime(value: string): string {
  return value.replace(/\.\d+Z$/, "Z");
}

export function plusHour(value: string): string {
  const t = new Date(urlTime(value)).getTime() + HOUR_MS;
  return new Date(t).toISOString().replace(/\.\d+Z$/, "Z");
}

export function runsHref(filters: Record<string, string | undefined>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(filters)) {
    if (v !== undefined && v !== "") q.set(k, k === "since" || k === "until" ? urlTime(v) : v);
  }
  const s = q.toString().replace(/%2C/g, ",").replace(/%3A/g, ":");
  return s ? `/runs/?${s}` : "/runs/";
}

export function runHref(runId: string, spanId?: string | null): string {
  return `/runs/view/?id=${runId}${spanId ? `&span=${spanId}` : ""}`;
}

export const FAILED = "failed,abandoned";
