/**
 * The costs view's data: the daily rollup for two periods of the same length (this one and the
 * one before, to say what changed), once grouped by agent and once by model, and the caps with
 * today's spend. Polled, keeping what is shown while the next answer comes.
 */
import { keepPreviousData, useQuery } from "@tanstack/react-query";

import { api, unwrap } from "@/api/client";
import type { components } from "@/api/schema";
import { useWho } from "@/lib/session";

import { addDays, todayIn } from "./days";

export type DailyCosts = components["schemas"]["DailyCosts"];
export type CostRow = components["schemas"]["CostRow"];
export type Budget = components["schemas"]["BudgetStatusOut"];
export type Grouping = "agent" | "model";

export const DAY_CHOICES = [7, 14, 30] as const;

/**
 * Two periods of `days` days ending today (the server's today, the default `until`). Today in UTC
 * may be a day off the server's timezone's, so one more day is asked for; the answer's `until`
 * says which day is today.
 */
export function useDailyCosts(groupBy: Grouping, days: number) {
  const { project } = useWho();
  return useQuery({
    queryKey: ["costs", project, "daily", groupBy, days],
    queryFn: async () =>
      unwrap(
        await api.GET("/v1/costs/daily", {
          params: { query: { group_by: groupBy, since: addDays(todayIn("UTC"), -2 * days - 1) } },
        }),
      ),
    refetchInterval: 15_000,
    placeholderData: keepPreviousData,
  });
}

export function useBudgets() {
  const { project } = useWho();
  return useQuery({
    queryKey: ["costs", project, "budgets"],
    queryFn: async () => unwrap(await api.GET("/v1/budgets")).budgets,
    refetchInterval: 5_000,
    placeholderData: keepPreviousData,
  });
}
