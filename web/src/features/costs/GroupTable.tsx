/**
 * One row per agent (or model): the period's spend against the period before, the calls (those at
 * an unknown price among them), the calls a cap refused, the runs that succeeded and what each
 * cost. Numbers that stand for runs link to the runs list with the same filters; the runs list
 * cannot filter by model, so a model's run counts are plain.
 */
import Link from "next/link";

import { formatCount, formatUsd } from "@/lib/format";

import { runsHref } from "./links";
import { byGroup, change, type Periods } from "./model";
import type { DailyCosts, Grouping } from "./queries";
import styles from "./costs.module.css";

export function GroupTable({
  doc,
  by,
  periods: p,
  days,
  tz,
}: {
  doc: DailyCosts;
  by: Grouping;
  periods: Periods;
  days: number;
  tz: string;
}) {
  const lines = byGroup(doc, by, p);
  if (lines.length === 0) {
    return <p className="quiet">No spend in these {days * 2} days.</p>;
  }
  const runs = (filters: Record<string, string>) => runsHref(filters, p.current.first, p.current.last, tz);
  return (
    <div className={styles.tableWrap}>
      <table className={styles.table} aria-label={`spend by ${by}`} data-testid={`table-${by}`}>
        <thead>
          <tr>
            <th scope="col">{by === "agent" ? "Agent" : "Model"}</th>
            <th scope="col">Spent</th>
            <th scope="col">The {days} days before</th>
            <th scope="col">Change</th>
            <th scope="col">Calls</th>
            <th scope="col" title="calls whose model has no known price (counted as $0)">
              Unknown price
            </th>
            <th scope="col" title="calls a daily cost cap refused before they were made">
              Refused
            </th>
            <th scope="col" title="runs that succeeded (by the day they started)">
              Successful runs
            </th>
            <th scope="col">Per successful run</th>
          </tr>
        </thead>
        <tbody>
          {lines.map(({ group, now, before }) => {
            const delta = change(now.cost, before.cost);
            const linkable = by === "agent" && group !== null;
            return (
              <tr key={group ?? ""} data-group={group ?? ""}>
                <th scope="row">{group ?? <span className="quiet">(none)</span>}</th>
                <td>{formatUsd(now.cost)}</td>
                <td className="quiet">{formatUsd(before.cost)}</td>
                <td className={delta === null ? "quiet" : delta > 0 ? styles.up : styles.down}>
                  {delta === null ? (now.cost > 0 ? "new" : "—") : `${delta >= 0 ? "+" : ""}${Math.round(delta * 100)}%`}
                </td>
                <td>{formatCount(now.calls)}</td>
                <td className={now.unpriced > 0 ? styles.warn : undefined}>{formatCount(now.unpriced)}</td>
                <td>
                  {linkable && now.refused > 0 ? (
                    <Link href={runs({ agent: group, refused_by_cap: "true" })}>{formatCount(now.refused)}</Link>
                  ) : (
                    formatCount(now.refused)
                  )}
                </td>
                <td>
                  {linkable ? (
                    <Link href={runs({ agent: group, status: "succeeded" })}>{formatCount(now.succeeded)}</Link>
                  ) : (
                    <span title={by === "model" ? "runs that succeeded and called this model" : undefined}>
                      {formatCount(now.succeeded)}
                    </span>
                  )}
                </td>
                <td>{formatUsd(now.succeeded > 0 ? now.cost / now.succeeded : null)}</td>
              </tr>
            );
          })}
        </tbody>
      </table>
    </div>
  );
}
