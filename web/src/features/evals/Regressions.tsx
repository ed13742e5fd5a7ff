/**
 * Open regressions: the sentence the server gives as evidence, the two sides compared, and the
 * worst runs of the recent side, each a link to the run. `?regression=<id>` scrolls to one and
 * marks it.
 */
import Link from "next/link";
import { useEffect } from "react";

import { formatCount } from "@/lib/format";
import { formatTime, fromNow } from "@/lib/time";

import type { Regression } from "./queries";
import styles from "./evals.module.css";

export function Regressions({ list, chosen, now }: { list: Regression[]; chosen: string | null; now: number }) {
  useEffect(() => {
    if (chosen !== null) {
      document.getElementById(`regression-${chosen}`)?.scrollIntoView({ block: "center" });
    }
  }, [chosen, list.length]);

  if (list.length === 0) {
    return <p className="quiet">No open regression: no score dropped significantly against its baseline.</p>;
  }
  return (
    <div className="cards">
      {list.map((r) => (
        <article
          key={r.id}
          id={`regression-${r.id}`}
          className={`card ${styles.regression}${String(r.id) === chosen ? ` ${styles.chosen}` : ""}`}
          data-testid="regression"
        >
          <div className="card-head">
            <h3>
              {r.agent}: {r.name} dropped
            </h3>
            <span className="quiet small" title={formatTime(r.opened_at)}>
              opened {fromNow(r.opened_at, now)}
            </span>
          </div>
          <p className={styles.evidence} data-testid="evidence">
            {r.evidence}
          </p>
          <p className="quiet small">
            {r.evaluator} v{r.evaluator_version} · baseline mean {r.baseline.mean.toFixed(3)} over{" "}
            {formatCount(r.baseline.n)} scores, recent {r.recent.mean.toFixed(3)} over {formatCount(r.recent.n)} · {r.test},
            q = {r.q.toPrecision(2)} · checked {fromNow(r.checked_at, now)}
          </p>
          {r.worst_run_ids.length > 0 && (
            <p className={styles.worst}>
              Worst runs:{" "}
              {r.worst_run_ids.map((id) => (
                <Link key={id} href={`/runs/view/?id=${id}`} className="mono" title={`run ${id}`} data-testid="worst-run">
                  {id.slice(0, 8)}
                </Link>
              ))}
            </p>
          )}
        </article>
      ))}
    </div>
  );
}
