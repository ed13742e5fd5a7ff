"use client";
/**
 * What is burning money: today's spend against each cap (settled, held by calls in flight,
 * remaining) with the projection to the end of the day, the cost spikes of the last 7 days (each
 * with the agent and the model that drove it, by the rule the server states), and the day's
 * most expensive runs.
 */
import Link from "next/link";

import { Status } from "@/components/Status";
import { formatUsd } from "@/lib/format";
import { formatTime, fromNow, parseTime } from "@/lib/time";

import { plusHour, runHref, runsHref } from "./links";
import s from "./overview.module.css";
import type { CostCard as Card } from "./queries";

type Spike = Card["spikes"][number];

/** Spikes of one agent and model on one day (the viewer's) told as one: hours, cost, baseline. */
function spikeGroups(spikes: Spike[]) {
  const groups = new Map<
    string,
    { key: string; agent: string; model: string; first: string; last: string; hours: number; cost: number; baseline: number; worst: number }
  >();
  for (const x of [...spikes].sort((a, b) => a.hour.localeCompare(b.hour))) {
    const key = `${x.agent}/${x.model}/${parseTime(x.hour).toDateString()}`;
    const g = groups.get(key);
    const cost = Number(x.cost_usd);
    if (g === undefined) {
      groups.set(key, { key, agent: x.agent, model: x.model, first: x.hour, last: x.hour, hours: 1, cost, baseline: Number(x.baseline_usd), worst: cost });
    } else {
      g.last = x.hour;
      g.hours += 1;
      g.cost += cost;
      g.baseline += Number(x.baseline_usd);
      g.worst = Math.max(g.worst, cost);
    }
  }
  return [...groups.values()].sort((a, b) => b.cost - b.baseline - (a.cost - a.baseline));
}

const pct = (part: number, whole: number) => `${Math.min(100, whole > 0 ? (part / whole) * 100 : 0).toFixed(1)}%`;

export function CostCard({ card, now }: { card: Card; now: number }) {
  const rule = card.spike_rule;
  return (
    <>
      <div className={s.figures}>
        <div className={s.figure}>
          <Link href={runsHref({ since: card.day_start })} className={s.big} aria-label="spent today">
            {formatUsd(card.spent_usd)}
          </Link>
          <span className={s.label}>spent today ({card.timezone})</span>
        </div>
        <div className={s.figure}>
          <Link href="/costs/" className={s.big}>
            {formatUsd(card.projected_usd)}
          </Link>
          <span className={s.label} title={`spent + the last ${card.projection_hours} hours' rate × the hours left today`}>
            projected by midnight, at {formatUsd(card.rate_usd_per_hour)}/h
          </span>
        </div>
      </div>
      {card.caps.length === 0 ? (
        <p className="quiet small">
          No daily cap is set. An admin sets one in <Link href="/settings/?tab=budgets">Settings → Budgets</Link>.
        </p>
      ) : (
        <ul className={s.list} aria-label="caps">
          {card.caps.map((c) => {
            const cap = Number(c.cap_usd);
            const settled = Number(c.settled_usd);
            const held = Number(c.held_usd);
            const over = Number(c.projected_usd) > cap;
            return (
              <li key={c.agent ?? ""}>
                <div className="small">
                  <Link href={c.agent === null ? "/costs/" : runsHref({ agent: c.agent, since: card.day_start })}>
                    <strong>{c.agent ?? "Whole project"}</strong>
                  </Link>
                  : {formatUsd(c.settled_usd)} settled + {formatUsd(c.held_usd)}{" "}
                  held of {formatUsd(c.cap_usd)}, {formatUsd(c.remaining_usd)} left ·{" "}
                  <span className={over ? "error" : "quiet"}>projected {formatUsd(c.projected_usd)}</span>
                </div>
                <div className={s.meter} role="img" aria-label={`${c.agent ?? "project"} cap used`}>
                  <span className={s.settled} style={{ width: pct(settled, cap) }} />
                  <span className={s.held} style={{ left: pct(settled, cap), width: pct(held, cap) }} />
                  <span className={s.projected} style={{ width: pct(Number(c.projected_usd), cap) }} />
                </div>
              </li>
            );
          })}
        </ul>
      )}
      <h4>Cost spikes, last {rule.days} days</h4>
      {card.spikes.length === 0 ? (
        <p className="quiet small">No spikes: no agent and model spent over {rule.factor}× its usual for the hour.</p>
      ) : (
        <ul className={s.list} aria-label="cost spikes">
          {spikeGroups(card.spikes).map((g) => (
            <li key={g.key} className={s.spike}>
              <Link href={runsHref({ agent: g.agent, since: g.first, until: plusHour(g.last) })}>
                <strong>{g.agent}</strong> on <span className="mono">{g.model}</span>
              </Link>
              : {formatUsd(g.cost)} {g.hours === 1 ? "in the hour from" : `in ${g.hours} spike hours, the first from`}{" "}
              {formatTime(g.first)}{" "}
              <span className="quiet">
                ({fromNow(g.first, now)}; usually {formatUsd(g.baseline)}
                {g.baseline > 0 && `, ${(g.cost / g.baseline).toFixed(1)}×`}
                {g.hours > 1 && `; the worst hour ${formatUsd(g.worst)}`})
              </span>
            </li>
          ))}
        </ul>
      )}
      <p className="quiet small">
        A spike: an hour&apos;s spend by one agent and model above {rule.factor}× the median of the same hour on the{" "}
        {rule.baseline_days} days before, and at least {formatUsd(rule.min_usd)} above it.
      </p>
      <h4>Most expensive runs today</h4>
      {card.top_runs.length === 0 ? (
        <p className="quiet small">No run has cost anything today.</p>
      ) : (
        <table className={s.table} aria-label="most expensive runs today">
          <tbody>
            {card.top_runs.map((r) => (
              <tr key={r.run_id}>
                <td>
                  <Link href={runHref(r.run_id)} className="mono small">
                    {r.agent ?? "(no agent)"} · {r.run_id.slice(0, 8)}
                  </Link>
                </td>
                <td>
                  <Status status={r.status} />
                </td>
                <td className="small quiet">{r.started_at && fromNow(r.started_at, now)}</td>
                <td className={s.num}>{formatUsd(r.cost_usd)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </>
  );
}
