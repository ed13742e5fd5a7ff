/** Links from a cost figure to the runs behind it (the runs list's filters: see GET /v1/runs). */
import { addDays, dayStart } from "./days";

/** The runs list's address for runs that started within the days first..last (in tz). */
export function runsHref(
  filters: Record<string, string | null | undefined>,
  first: string,
  last: string,
  tz: string,
): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(filters)) if (v) q.set(k, v);
  q.set("since", rfc3339(dayStart(first, tz)));
  q.set("until", rfc3339(dayStart(addDays(last, 1), tz)));
  return `/runs/?${q.toString()}`;
}

function rfc3339(d: Date): string {
  return d.toISOString().replace(/\.000Z$/, "Z");
}
