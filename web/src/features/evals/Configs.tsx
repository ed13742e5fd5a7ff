/**
 * The eval configurations: which evaluator, over which runs, when, and whether paused. An admin
 * pauses, resumes or runs one now (a backfill over its runs: those judged before are skipped);
 * anyone else sees those controls disabled, with the reason (the server refuses them anyway).
 */
import { Status } from "@/components/Status";
import { atLeast, useWho } from "@/lib/session";
import { formatTime, fromNow } from "@/lib/time";

import { usePauseConfig, useRunConfig, type EvalConfig } from "./queries";
import styles from "./evals.module.css";

function selector(c: EvalConfig): string {
  const s = c.selector;
  const parts = [
    s.agents.length > 0 ? `agents ${s.agents.join(", ")}` : "every agent",
    ...(s.environments.length > 0 ? [`environments ${s.environments.join(", ")}`] : []),
    ...(s.tags.length > 0 ? [`tagged ${s.tags.join(" or ")}`] : []),
    ...(s.sample_rate < 1 ? [`${Math.round(s.sample_rate * 100)}% sampled`] : []),
  ];
  return parts.join(" · ");
}

function trigger(c: EvalConfig): string {
  switch (c.trigger) {
    case "post_run":
      return `after each run (${c.grace_seconds} s after it ends)`;
    case "schedule":
      return `on schedule ${c.schedule ?? "?"} (${c.timezone})`;
    default:
      return "only when run by hand";
  }
}

export function Configs({ configs, now }: { configs: EvalConfig[]; now: number }) {
  const { role } = useWho();
  const admin = atLeast(role, "admin");
  const why = admin ? undefined : `Only an admin can pause, resume or run an eval configuration; you are a ${role}.`;
  const pause = usePauseConfig();
  const run = useRunConfig();
  return (
    <div className={styles.tableWrap}>
      {!admin && (
        <p className="refusal" data-testid="evals-admin-only">
          {why}
        </p>
      )}
      <table className={styles.table} aria-label="eval configurations">
        <thead>
          <tr>
            <th scope="col">Name</th>
            <th scope="col">Evaluator</th>
            <th scope="col">Runs judged</th>
            <th scope="col">When</th>
            <th scope="col">State</th>
            <th scope="col" aria-label="actions" />
          </tr>
        </thead>
        <tbody>
          {configs.map((c) => {
            const last = c.jobs[0];
            return (
              <tr key={c.name} data-config={c.name}>
                <th scope="row">{c.name}</th>
                <td>
                  <span className="mono">{c.evaluator_name}</span>{" "}
                  <span className="quiet small">v{c.evaluator_version}</span>
                  {Object.keys(c.params).length > 0 && (
                    <div className="quiet small mono">{JSON.stringify(c.params)}</div>
                  )}
                </td>
                <td className="small">{selector(c)}</td>
                <td className="small">
                  {trigger(c)}
                  {c.next_run_at !== null && !c.paused && (
                    <div className="quiet" title={formatTime(c.next_run_at)}>
                      next {fromNow(c.next_run_at, now)}
                    </div>
                  )}
                  {last !== undefined && (
                    <div className="quiet">
                      last job {last.id}: {last.state}
                    </div>
                  )}
                </td>
                <td>
                  <Status status={c.paused ? "paused" : "active"} />
                </td>
                <td className={styles.actions}>
                  <button
                    type="button"
                    disabled={!admin || pause.isPending}
                    title={why}
                    onClick={() => pause.mutate({ name: c.name, paused: !c.paused })}
                  >
                    {c.paused ? "Resume" : "Pause"}
                  </button>
                  <button
                    type="button"
                    className="primary"
                    disabled={!admin || run.isPending}
                    title={why ?? "Judge its runs now (those judged before are skipped)"}
                    onClick={() => run.mutate(c.name)}
                  >
                    Run now
                  </button>
                </td>
              </tr>
            );
          })}
        </tbody>
      </table>
    </div>
  );
}
