"use client";
/** What is failing: failed and abandoned runs of the last 24 h against the 24 h before, the error
 * rate, the most frequent error signatures (error type + failing span), the latest failed runs. */
import Link from "next/link";

import { Status } from "@/components/Status";
import { formatCount, formatShare } from "@/lib/format";
import { fromNow } from "@/lib/time";

import { FAILED, runHref, runsHref } from "./links";
import s from "./overview.module.css";
import type { FailuresCard as Card } from "./queries";

export function FailuresCard({ card, now }: { card: Card; now: number }) {
  const last = runsHref({ status: FAILED, since: card.since });
  const before = runsHref({ status: FAILED, since: card.previous_since, until: card.since });
  const change = card.failed - card.previous_failed;
  return (
    <>
      <div className={s.figures}>
        <div className={s.figure}>
          <Link href={last} className={`${s.big} ${card.failed ? s.bad : ""}`} aria-label="failed runs in the last 24 hours">
            {formatCount(card.failed)}
          </Link>
          <span className={s.label}>
            failed or abandoned, last 24 h{card.abandoned ? ` (${formatCount(card.abandoned)} abandoned)` : ""}
          </span>
        </div>
        <div className={s.figure}>
          <Link href={before} className={s.big}>
            {formatCount(card.previous_failed)}
          </Link>
          <span className={s.label}>
            the 24 h before{change !== 0 && ` (${change > 0 ? "+" : ""}${formatCount(change)})`}
          </span>
        </div>
        <div className={s.figure}>
          <Link href={runsHref({ since: card.since })} className={s.big}>
            {formatShare(card.error_rate)}
          </Link>
          <span className={s.label}>error rate, of {formatCount(card.runs)} runs</span>
        </div>
      </div>
      {card.signatures.length === 0 ? (
        <p className="quiet">No failed runs in the last 24 hours.</p>
      ) : (
        <table className={s.table} aria-label="error signatures">
          <thead>
            <tr>
              <th>Error</th>
              <th>Failing span</th>
              <th className={s.num}>Runs</th>
              <th>Last seen</th>
            </tr>
          </thead>
          <tbody>
            {card.signatures.map((g) => (
              <tr key={`${g.error_type}/${g.span_name}`}>
                <td className="mono">{g.error_type ?? <span className="quiet">(none given)</span>}</td>
                <td className="mono">{g.span_name ?? <span className="quiet">—</span>}</td>
                <td className={s.num}>
                  <Link href={last}>{formatCount(g.count)}</Link>
                </td>
                <td>{fromNow(g.last_seen, now)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {card.recent.length > 0 && (
        <>
          <h4>Latest failed runs</h4>
          <ul className={s.list} aria-label="latest failed runs">
            {card.recent.map((r) => (
              <li key={r.run_id}>
                <Status status={r.status} />{" "}
                <Link href={runHref(r.run_id)} className="mono small">
                  {r.agent ?? "(no agent)"} · {r.run_id.slice(0, 8)}
                </Link>{" "}
                <span className="small">
                  {r.error_type ?? r.status}
                  {r.failing_span_name && <> at <span className="mono">{r.failing_span_name}</span></>}
                  {r.started_at && <span className="quiet"> · {fromNow(r.started_at, now)}</span>}
                </span>
              </li>
            ))}
          </ul>
        </>
      )}
    </>
  );
}
