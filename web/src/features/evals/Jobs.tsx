/**
 * Eval jobs, newest first, with their progress: runs looked at out of the runs in their window
 * (a post-run job has no total: its counts grow as runs end). Polled every two seconds while a
 * batch job is queued or running.
 */
import { Status } from "@/components/Status";
import { formatCount } from "@/lib/format";
import { formatTime, fromNow } from "@/lib/time";

import type { EvalJob } from "./queries";
import styles from "./evals.module.css";

export function Jobs({ jobs, now }: { jobs: EvalJob[]; now: number }) {
  if (jobs.length === 0) {
    return <p className="quiet">No job yet: post-run configurations start one with the first run that ends.</p>;
  }
  return (
    <div className={styles.tableWrap}>
      <table className={styles.table} aria-label="eval jobs">
        <thead>
          <tr>
            <th scope="col">Job</th>
            <th scope="col">Configuration</th>
            <th scope="col">Kind</th>
            <th scope="col">State</th>
            <th scope="col">Progress</th>
            <th scope="col">Scored · n/a · errors · skipped</th>
            <th scope="col">Started</th>
          </tr>
        </thead>
        <tbody>
          {jobs.map((j) => {
            const share = j.total ? Math.min(1, j.processed / j.total) : j.state === "done" ? 1 : null;
            return (
              <tr key={j.id} data-job-id={j.id} data-state={j.state}>
                <th scope="row">{j.id}</th>
                <td>{j.config}</td>
                <td className="small">{j.kind.replace("_", "-")}</td>
                <td>
                  <Status status={j.state} />
                </td>
                <td className={styles.progressCell}>
                  {share !== null && (
                    <span
                      className={styles.progress}
                      role="progressbar"
                      aria-valuemin={0}
                      aria-valuemax={j.total ?? j.processed}
                      aria-valuenow={j.processed}
                      aria-label={`job ${j.id} progress`}
                    >
                      <span style={{ width: `${share * 100}%` }} />
                    </span>
                  )}
                  <span className="small">
                    {formatCount(j.processed)}
                    {j.total !== null ? ` of ${formatCount(j.total)}` : ""} runs
                  </span>
                  {j.note && <div className="quiet small">{j.note}</div>}
                </td>
                <td className="small">
                  {formatCount(j.scored)} · {formatCount(j.not_applicable)} ·{" "}
                  <span className={j.errors > 0 ? "error" : undefined}>{formatCount(j.errors)}</span> ·{" "}
                  {formatCount(j.skipped)}
                </td>
                <td className="small" title={formatTime(j.started_at ?? j.created_at)}>
                  {fromNow(j.started_at ?? j.created_at, now)}
                </td>
              </tr>
            );
          })}
        </tbody>
      </table>
    </div>
  );
}
