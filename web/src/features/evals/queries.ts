/**
 * The evals view's data: daily scores, open regressions, configurations and jobs (polled every
 * two seconds while a batch job is queued or running, so its progress moves), and the admin's changes:
 * pause or resume a configuration, run one now (a backfill over its runs).
 */
import { keepPreviousData, useMutation, useQuery, useQueryClient } from "@tanstack/react-query";

import { api, unwrap } from "@/api/client";
import type { components } from "@/api/schema";
import { useNotify } from "@/components/Notices";
import { useWho } from "@/lib/session";

export type DailyScore = components["schemas"]["DailyScore"];
export type Regression = components["schemas"]["RegressionOut"];
export type EvalConfig = components["schemas"]["ConfigOut"];
export type EvalJob = components["schemas"]["JobOut"];

export const JOBS_SHOWN = 20;

export function useDailyScores() {
  const { project } = useWho();
  return useQuery({
    queryKey: ["evals", project, "scores-daily"],
    queryFn: async () => unwrap(await api.GET("/v1/scores/daily")),
    refetchInterval: 60_000,
    placeholderData: keepPreviousData,
  });
}

export function useRegressions() {
  const { project } = useWho();
  return useQuery({
    queryKey: ["evals", project, "regressions"],
    queryFn: async () => unwrap(await api.GET("/v1/evals/regressions", { params: { query: { state: "open" } } })).regressions,
    refetchInterval: 30_000,
    placeholderData: keepPreviousData,
  });
}

export function useConfigs() {
  const { project } = useWho();
  return useQuery({
    queryKey: ["evals", project, "configs"],
    queryFn: async () => unwrap(await api.GET("/v1/evals/configs")).configs,
    refetchInterval: 15_000,
    placeholderData: keepPreviousData,
  });
}

/** A batch job is queued or running (the post-run job of a configuration runs for good). */
function busy(jobs: EvalJob[] | undefined): boolean {
  return jobs?.some((j) => j.kind !== "post_run" && (j.state === "queued" || j.state === "running")) ?? false;
}

export function useJobs() {
  const { project } = useWho();
  return useQuery({
    queryKey: ["evals", project, "jobs"],
    queryFn: async () => unwrap(await api.GET("/v1/evals/jobs", { params: { query: { limit: JOBS_SHOWN } } })).jobs,
    refetchInterval: (query) => (busy(query.state.data) ? 2_000 : 15_000),
    placeholderData: keepPreviousData,
  });
}

export function usePauseConfig() {
  const queries = useQueryClient();
  const notify = useNotify();
  const { project } = useWho();
  return useMutation({
    mutationFn: async ({ name, paused }: { name: string; paused: boolean }) =>
      unwrap(await api.PATCH("/v1/evals/configs/{name}", { params: { path: { name } }, body: { paused } })),
    onSuccess: (c) => notify("done", `${c.name} is ${c.paused ? "paused" : "running again"}.`),
    onError: (error, { name }) => notify("error", `${name} was not changed: ${error.message}.`),
    onSettled: () => queries.invalidateQueries({ queryKey: ["evals", project] }),
  });
}

export function useRunConfig() {
  const queries = useQueryClient();
  const notify = useNotify();
  const { project } = useWho();
  return useMutation({
    mutationFn: async (name: string): Promise<EvalJob> => {
      const answer = unwrap(
        await api.POST("/v1/evals/configs/{name}/jobs", { params: { path: { name } }, body: { dry_run: false } }),
      );
      if (!("id" in answer)) throw new Error("the server previewed the job instead of queueing it");
      return answer;
    },
    onSuccess: (job) =>
      notify(
        "done",
        `Job ${job.id} queued for ${job.config}: ${job.total ?? "its"} runs to look at (those judged before are skipped).`,
      ),
    onError: (error, name) => notify("error", `${name} was not started: ${error.message}.`),
    onSettled: () => queries.invalidateQueries({ queryKey: ["evals", project] }),
  });
}
