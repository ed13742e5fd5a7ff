"use client";
/** What got worse: the open eval regressions, each with its evidence, linked to the evals view. */
import Link from "next/link";

import { fromNow } from "@/lib/time";

import s from "./overview.module.css";
import type { QualityCard as Card } from "./queries";

export function QualityCard({ card, now }: { card: Card; now: number }) {
  if (card.regressions.length === 0) {
    return <p className="quiet">No open eval regressions.</p>;
  }
  return (
    <ul className={s.list} aria-label="open regressions">
      {card.regressions.map((r) => (
        <li key={r.id}>
          <Link href={`/evals/?regression=${r.id}`}>
            <strong>{r.agent}</strong>: {r.name}
          </Link>{" "}
          <span className="quiet small">
            ({r.evaluator} v{r.evaluator_version}, opened {fromNow(r.opened_at, now)})
          </span>
          <div className="small">{r.evidence}</div>
        </li>
      ))}
    </ul>
  );
}
