/**
 * The runs list's filters as the URL holds them: the names are exactly GET /v1/runs's query
 * parameters, so a link from any view (`/runs/?status=failed&since=…`) is a filter, a reload keeps
 * it and the address can be shared.
 */
import type { paths } from "@/api/schema";

export const FILTER_KEYS = [
  "agent",
  "status",
  "environment",
  "tag",
  "since",
  "until",
  "min_cost_usd",
  "has_error",
  "score_name",
  "score_min",
  "score_max",
  "order",
  "awaiting_approval",
  "refused_by_cap",
] as const;
export type FilterKey = (typeof FILTER_KEYS)[number];
export type Filters = Partial<Record<FilterKey, string>>;

export const RUN_STATUSES = ["running", "succeeded", "failed", "cancelled", "abandoned"] as const;

type RunsQuery = NonNullable<paths["/v1/runs"]["get"]["parameters"]["query"]>;

/** The filters in a URL's query string (unknown names and empty values left out). */
export function readFilters(params: URLSearchParams): Filters {
  const out: Filters = {};
  for (const key of FILTER_KEYS) {
    const value = params.get(key);
    if (value !== null && value.trim() !== "") out[key] = value.trim();
  }
  return out;
}

/** The query string of a filter ("" for none), keys in a stable order. */
export function filterQuery(filters: Filters): string {
  const params = new URLSearchParams();
  for (const key of FILTER_KEYS) {
    const value = filters[key];
    if (value !== undefined && value !== "") params.set(key, value);
  }
  const text = params.toString();
  return text ? `?${text}` : "";
}

function flag(value: string | undefined): boolean | undefined {
  if (value === "true") return true;
  if (value === "false") return false;
  return undefined;
}

function num(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  return Number.isFinite(n) ? n : undefined;
}

/** The API's query for the filters; a value the server would refuse is sent as typed, so the
 * page shows the server's explanation rather than silently dropping it. */
export function apiQuery(filters: Filters, cursor: string | null, limit: number): RunsQuery {
  const q: RunsQuery = { limit };
  if (filters.agent) q.agent = filters.agent;
  if (filters.status) q.status = filters.status;
  if (filters.environment) q.environment = filters.environment;
  if (filters.tag) q.tag = filters.tag;
  if (filters.since) q.since = filters.since;
  if (filters.until) q.until = filters.until;
  if (filters.min_cost_usd) q.min_cost_usd = filters.min_cost_usd;
  const hasError = flag(filters.has_error);
  if (hasError !== undefined) q.has_error = hasError;
  if (filters.score_name) q.score_name = filters.score_name;
  const min = num(filters.score_min);
  if (min !== undefined) q.score_min = min;
  const max = num(filters.score_max);
  if (max !== undefined) q.score_max = max;
  if (filters.order === "score_asc" || filters.order === "score_desc") q.order = filters.order;
  if (flag(filters.awaiting_approval)) q.awaiting_approval = true;
  if (flag(filters.refused_by_cap)) q.refused_by_cap = true;
  if (cursor) q.cursor = cursor;
  return q;
}

/** An RFC 3339 time as a `datetime-local` input shows it (the viewer's timezone), and back. */
export function toLocalInput(value: string | undefined): string {
  if (!value) return "";
  const d = new Date(value);
  if (Number.isNaN(d.getTime())) return "";
  const pad = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

export function fromLocalInput(value: string): string {
  if (!value) return "";
  const d = new Date(value); // a datetime-local value is read in the viewer's timezone
  return Number.isNaN(d.getTime()) ? "" : d.toISOString().replace(/\.000Z$/, "Z");
}
