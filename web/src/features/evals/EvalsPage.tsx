"use client";
/**
 * Evals: open regressions first (with their evidence and worst runs), then scores over time per
 * evaluator and agent, the eval configurations (paused or not; an admin pauses, resumes or runs
 * one now) and the jobs with their progress. `?regression=<id>` scrolls to one regression.
 */
import { useSearchParams } from "next/navigation";

import { useWho } from "@/lib/session";
import { useNow } from "@/lib/time";
import { todayIn } from "@/features/costs/days";

import { Configs } from "./Configs";
import { Jobs } from "./Jobs";
import { useConfigs, useDailyScores, useJobs, useRegressions } from "./queries";
import { Regressions } from "./Regressions";
import { ScoreCharts } from "./ScoreCharts";
import styles from "./evals.module.css";

function Failed({ what, error }: { what: string; error: Error | null }) {
  return error ? (
    <p className="error" role="alert">
      Could not load {what}: {error.message}
    </p>
  ) : null;
}

function Loading({ shown }: { shown: boolean }) {
  return shown ? (
    <p className="quiet" role="status">
      Loading…
    </p>
  ) : null;
}

export function EvalsPage() {
  const chosen = useSearchParams().get("regression");
  const regressions = useRegressions();
  const scores = useDailyScores();
  const configs = useConfigs();
  const jobs = useJobs();
  const now = useNow();
  const { project } = useWho();

  return (
    <section>
      <h1>Evals</h1>
      <h2 className={styles.h2}>Open regressions</h2>
      <Failed what="the regressions" error={regressions.error} />
      <Loading shown={regressions.isPending} />
      {regressions.data !== undefined && <Regressions list={regressions.data} chosen={chosen} now={now} />}

      <h2 className={styles.h2}>Scores per day</h2>
      <Failed what="the scores" error={scores.error} />
      <Loading shown={scores.isPending} />
      {scores.data !== undefined && scores.data.days.length === 0 && (
        <p className="quiet">No scores in the last 30 days: they come from the configurations below, and from people and agents (POST /v1/scores).</p>
      )}
      {scores.data !== undefined && scores.data.days.length > 0 && (
        <>
          <p className="quiet small">
            By the day the judged runs started, in {scores.data.timezone}; the mean of each day&apos;s scores.
          </p>
          <ScoreCharts rows={scores.data.days} until={todayIn(scores.data.timezone, now)} />
        </>
      )}

      <h2 className={styles.h2}>Configurations</h2>
      <Failed what="the configurations" error={configs.error} />
      <Loading shown={configs.isPending} />
      {configs.data !== undefined && configs.data.length === 0 && <FirstConfig project={project} />}
      {configs.data !== undefined && configs.data.length > 0 && <Configs configs={configs.data} now={now} />}

      <h2 className={styles.h2}>Jobs</h2>
      <Failed what="the jobs" error={jobs.error} />
      <Loading shown={jobs.isPending} />
      {jobs.data !== undefined && <Jobs jobs={jobs.data} now={now} />}
    </section>
  );
}

function FirstConfig({ project }: { project: string }) {
  return (
    <div className="empty" data-testid="evals-empty">
      <p>No eval configuration yet. Add a first one on the server (an admin), for example every run judged on whether it succeeded:</p>
      <pre className={styles.code}>
        {`controlroom evals add succeeded --project ${project} --evaluator run_succeeded --trigger post_run
controlroom evals run succeeded --project ${project} --since 30d      # and judge the last 30 days now`}
      </pre>
      <p>
        Or <code>POST /v1/evals/configs</code>; docs/evals.md lists the built-in evaluators, the LLM judge and how to write your
        own.
      </p>
    </div>
  );
}
