/**
 * The runs list's data. One page at a time, keyset-paged (next_cursor): the first page polls, so a
 * new run shows up without a reload, and a page keeps its rows on screen while the next answer
 * loads (no flashing).
 */
import { keepPreviousData, useQuery } from "@tanstack/react-query";

import { api, unwrap } from "@/api/client";
import type { components } from "@/api/schema";
import { useWho } from "@/lib/session";

import { apiQuery, type Filters } from "./filters";

export type RunItem = components["schemas"]["RunListItem"];
export const PAGE_SIZE = 50;
export const LIVE_EVERY_MS = 3_000;

export function useRunsPage(filters: Filters, cursor: string | null) {
  const { project } = useWho();
  return useQuery({
    queryKey: ["runs", project, "list", filters, cursor],
    queryFn: async () => unwrap(await api.GET("/v1/runs", { params: { query: apiQuery(filters, cursor, PAGE_SIZE) } })),
    placeholderData: keepPreviousData,
    refetchInterval: cursor === null ? LIVE_EVERY_MS : false, // later pages stay as they were read
  });
}

/** Whether the project has any run at all (for the newcomer's empty state). */
export function useAnyRun(enabled: boolean) {
  const { project } = useWho();
  return useQuery({
    queryKey: ["runs", project, "any"],
    queryFn: async () => unwrap(await api.GET("/v1/runs", { params: { query: { limit: 1 } } })).runs.length > 0,
    enabled,
    refetchInterval: LIVE_EVERY_MS,
  });
}
