/**
 * A run's data: its tree without the spans' payloads (a 2,000-span run stays small), polled while
 * the run is running; one span's input, output and attributes when it is selected; today's caps.
 */
import { keepPreviousData, useQuery } from "@tanstack/react-query";

import { api, unwrap } from "@/api/client";
import type { components } from "@/api/schema";
import { useWho } from "@/lib/session";

export type Run = components["schemas"]["RunDetail"];
export type Span = components["schemas"]["SpanOut"];
export type RunApproval = components["schemas"]["RunApproval"];
export type Budget = components["schemas"]["BudgetStatusOut"];

export const LIVE_EVERY_MS = 2_000;

export function isRunId(id: string): boolean {
  return /^[0-9a-f]{32}$/.test(id);
}

export function useRun(id: string) {
  const { project } = useWho();
  return useQuery({
    queryKey: ["runs", project, "one", id],
    queryFn: async () =>
      unwrap(await api.GET("/v1/runs/{run_id}", { params: { path: { run_id: id }, query: { payloads: false } } })),
    enabled: isRunId(id),
    placeholderData: keepPreviousData,
    refetchInterval: (query) => (query.state.data?.status === "running" ? LIVE_EVERY_MS : false),
  });
}

export function useSpanPayload(runId: string, spanId: string | null, running: boolean) {
  const { project } = useWho();
  return useQuery({
    // the span's state in the key: once it ends, its payload (its output) is asked for once more
    queryKey: ["runs", project, "span", runId, spanId, running],
    queryFn: async () =>
      unwrap(
        await api.GET("/v1/runs/{run_id}/spans/{span_id}", {
          params: { path: { run_id: runId, span_id: spanId ?? "" } },
        }),
      ),
    enabled: spanId !== null && isRunId(runId),
    refetchInterval: running ? LIVE_EVERY_MS : false,
  });
}

export function useBudgets() {
  const { project } = useWho();
  return useQuery({
    queryKey: ["budgets", project, "today"],
    queryFn: async () => unwrap(await api.GET("/v1/budgets")).budgets,
    refetchInterval: 30_000,
  });
}

/** The cap that applies to the run's agent today: its own, else the project's. */
export function capFor(budgets: Budget[] | undefined, agent: string | null): Budget | undefined {
  if (!budgets) return undefined;
  return budgets.find((b) => agent !== null && b.agent === agent) ?? budgets.find((b) => b.agent === null);
}
