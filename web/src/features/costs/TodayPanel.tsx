/**
 * Today against each cap: spent (settled), held by calls in flight, what remains, the burn rate
 * so far and where it ends the day at that rate. Without a cap, today's spend from the rollup
 * and how to set one.
 */
import { formatUsd } from "@/lib/format";
import { formatTime, fromNow, parseTime } from "@/lib/time";

import { dayStart, todayIn } from "./days";
import type { Budget, DailyCosts } from "./queries";
import styles from "./costs.module.css";

const HOUR = 3_600_000;

export interface Burn {
  spent: number;
  perHour: number;
  projected: number;
  dayMs: number;
  elapsedMs: number;
}

/** The rate so far today, carried on to the end of the day (held spend counts as spent). */
export function burn(spent: number, held: number, start: number, end: number, now: number): Burn {
  const dayMs = end - start;
  const elapsedMs = Math.min(Math.max(now - start, 60_000), dayMs);
  const perHour = (spent / elapsedMs) * HOUR;
  return { spent, perHour, projected: spent + held + (perHour * (dayMs - elapsedMs)) / HOUR, dayMs, elapsedMs };
}

export function TodayPanel({
  budgets,
  costs,
  now,
  error,
}: {
  budgets: Budget[] | undefined;
  costs: DailyCosts | undefined;
  now: number;
  error: Error | null;
}) {
  if (error) {
    return (
      <p className="error" role="alert">
        Could not load the caps: {error.message}
      </p>
    );
  }
  if (budgets === undefined) return null;
  if (budgets.length === 0) {
    if (costs === undefined) return null;
    const today = todayIn(costs.timezone, now);
    const spent = costs.days.filter((d) => d.day === today).reduce((s, d) => s + Number(d.cost_usd ?? 0), 0);
    const start = dayStart(today, costs.timezone).getTime();
    const b = burn(spent, 0, start, start + 24 * HOUR, now);
    return (
      <section className={styles.today} aria-label="today">
        <div className={styles.capCard}>
          <h3>Today</h3>
          <p className={styles.big}>{formatUsd(spent)}</p>
          <Rate b={b} cap={null} />
          <p className="quiet small">
            No daily cap is set: <code>controlroom budgets set --project … --cap-usd 10</code> (or Settings →
            Budgets) refuses calls before they would cross it.
          </p>
        </div>
      </section>
    );
  }
  const ordered = [...budgets].sort((a, b) => (a.agent === null ? -1 : b.agent === null ? 1 : a.agent.localeCompare(b.agent)));
  return (
    <section className={styles.today} aria-label="today">
      {ordered.map((bu) => {
        const cap = Number(bu.cap_usd);
        const spent = Number(bu.settled_usd);
        const held = Number(bu.held_usd);
        const end = parseTime(bu.resets_at).getTime();
        const b = burn(spent, held, dayStart(bu.day, bu.timezone).getTime(), end, now);
        const used = cap > 0 ? Math.min(1, (spent + held) / cap) : 1;
        return (
          <div key={bu.agent ?? ""} className={styles.capCard} data-testid="cap-card">
            <h3>{bu.agent === null ? "The project today" : `${bu.agent} today`}</h3>
            <p className={styles.big}>
              {formatUsd(spent)} <span className="quiet small">of {formatUsd(cap)}</span>
            </p>
            <div className={styles.meter} role="meter" aria-valuemin={0} aria-valuemax={cap} aria-valuenow={spent + held} aria-label="spent of the cap">
              <span style={{ width: `${used * 100}%` }} className={used >= 1 ? styles.full : undefined} />
            </div>
            <p className="small">
              {formatUsd(held)} held by calls in flight · {formatUsd(bu.remaining_usd)} left
            </p>
            <Rate b={b} cap={cap} />
            <p className="quiet small">
              {bu.day} in {bu.timezone}; resets {formatTime(bu.resets_at)} ({fromNow(bu.resets_at, now)})
            </p>
          </div>
        );
      })}
    </section>
  );
}

function Rate({ b, cap }: { b: Burn; cap: number | null }) {
  const over = cap !== null && b.projected > cap;
  return (
    <p className="small">
      Burning {formatUsd(b.perHour)}/h so far; at that rate{" "}
      <strong className={over ? styles.warn : undefined} data-testid="projection">
        {formatUsd(b.projected)}
      </strong>{" "}
      by the end of the day{over ? " — past the cap, so calls will be refused before then" : ""}.
    </p>
  );
}
