"use client";
/**
 * The overview, triage first: who is waiting on a person, what is failing, what is burning money,
 * what got worse; then runs and cost per hour. One request answers every card (polled); a card the
 * server could not compute shows its error alone. Every number links to the list behind it. The
 * series' window (24 h or 7 days) is in the URL.
 */
import { useQueryClient } from "@tanstack/react-query";
import Link from "next/link";
import { useSearchParams } from "next/navigation";
import type { ReactNode } from "react";

import { ApiError } from "@/api/client";
import { useWho } from "@/lib/session";
import { useNow } from "@/lib/time";

import { ApprovalsCard } from "./ApprovalsCard";
import { CostCard } from "./CostCard";
import { FailuresCard } from "./FailuresCard";
import { FirstRun } from "./FirstRun";
import { CostChart, RunsChart } from "./HourlyCharts";
import s from "./overview.module.css";
import { QualityCard } from "./QualityCard";
import { failed, useOverview, type CardError, type Overview, type Window } from "./queries";

function Card<T extends object>({
  title,
  name,
  card,
  wide,
  children,
}: {
  title: string;
  name: string;
  card: T | CardError;
  wide?: boolean;
  children: (card: T) => ReactNode;
}) {
  return (
    <section className={`card ${wide ? s.wide : ""}`} aria-label={name} data-card={name}>
      <header className="card-head">
        <h3>{title}</h3>
      </header>
      {failed(card) ? (
        <p className="error" role="alert">
          This card could not be computed: {card.error}
        </p>
      ) : (
        children(card)
      )}
    </section>
  );
}

function quiet(o: Overview): boolean {
  const f = o.failures;
  const c = o.cost;
  const a = o.approvals;
  return (
    !failed(f) &&
    f.runs + f.previous_runs === 0 &&
    !failed(c) &&
    Number(c.spent_usd) === 0 &&
    !failed(a) &&
    a.pending === 0
  );
}

export function OverviewPage() {
  const params = useSearchParams();
  const window: Window = params.get("window") === "7d" ? "7d" : "24h";
  const overview = useOverview(window);
  const now = useNow();
  const { project } = useWho();
  const queries = useQueryClient();
  const refresh = () => void queries.invalidateQueries({ queryKey: ["overview", project] });
  const o = overview.data;

  return (
    <section>
      <div className={s.head}>
        <h1>Overview</h1>
        {overview.error && (
          <p className="error" role="alert">
            Could not load the overview
            {overview.error instanceof ApiError ? `: ${overview.error.message}` : ""}
            {o !== undefined ? " (showing the last answer)." : "."}
          </p>
        )}
      </div>
      {o === undefined ? (
        !overview.error && (
          <p className="quiet" role="status">
            Loading…
          </p>
        )
      ) : (
        <>
          {quiet(o) && <FirstRun />}
          <div className={s.grid}>
            <Card title="Waiting for a person" name="approvals" card={o.approvals}>
              {(c) => <ApprovalsCard card={c} now={now} onDecided={refresh} />}
            </Card>
            <Card title="Failures" name="failures" card={o.failures}>
              {(c) => <FailuresCard card={c} now={now} />}
            </Card>
            <Card title="Cost" name="cost" card={o.cost}>
              {(c) => <CostCard card={c} now={now} />}
            </Card>
            <Card title="Quality" name="quality" card={o.quality}>
              {(c) => <QualityCard card={c} now={now} />}
            </Card>
            <Card title="Per hour" name="series" card={o.series} wide>
              {(c) => (
                <>
                  <nav className={s.toggle} aria-label="window">
                    {(["24h", "7d"] as const).map((w) => (
                      <Link key={w} href={w === "24h" ? "/" : "/?window=7d"} aria-current={w === window ? "true" : undefined}>
                        {w === "24h" ? "Last 24 hours" : "Last 7 days"}
                      </Link>
                    ))}
                  </nav>
                  <h4>Runs per hour, by status</h4>
                  <RunsChart card={c} />
                  <h4>Cost per hour</h4>
                  <CostChart card={c} />
                </>
              )}
            </Card>
          </div>
        </>
      )}
    </section>
  );
}
