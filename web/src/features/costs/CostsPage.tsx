"use client";
/**
 * Costs: what the project spends per day (stacked by agent or by model, the cap drawn), today's
 * burn rate and where it ends the day, and per agent and per model the period's spend against
 * the period before with what it bought (successful runs) and what the caps stopped (refusals).
 * The grouping and the number of days are in the URL (`?group_by=agent|model&days=N`).
 */
import Link from "next/link";
import { useSearchParams } from "next/navigation";

import { formatCount, formatUsd } from "@/lib/format";
import { useWho } from "@/lib/session";
import { useNow } from "@/lib/time";

import { GroupTable } from "./GroupTable";
import { runsHref } from "./links";
import { OTHERS, byGroup, change, chartDays, periods, total, type Periods } from "./model";
import { DAY_CHOICES, useBudgets, useDailyCosts, type Grouping } from "./queries";
import { SpendChart } from "./SpendChart";
import { TodayPanel } from "./TodayPanel";
import styles from "./costs.module.css";

const CHART_GROUPS = 7; // more are summed as "(others)"

function readGrouping(raw: string | null): Grouping {
  return raw === "model" ? "model" : "agent";
}

function readDays(raw: string | null): number {
  const n = Number(raw);
  return Number.isInteger(n) && n >= 1 && n <= 90 ? n : 14;
}

export function CostsPage() {
  const params = useSearchParams();
  const groupBy = readGrouping(params.get("group_by"));
  const days = readDays(params.get("days"));
  const byAgent = useDailyCosts("agent", days);
  const byModel = useDailyCosts("model", days);
  const budgets = useBudgets();
  const now = useNow(30_000);
  const { project } = useWho();

  const shown = groupBy === "agent" ? byAgent : byModel;
  const doc = shown.data;
  const href = (g: Grouping, n: number) => `/costs/?group_by=${g}&days=${n}`;

  return (
    <section>
      <div className={styles.head}>
        <h1>Costs</h1>
        <nav className={styles.controls} aria-label="cost view">
          <span className={styles.toggle} role="group" aria-label="stack by">
            {(["agent", "model"] as const).map((g) => (
              <Link key={g} href={href(g, days)} aria-current={g === groupBy ? "true" : undefined}>
                By {g}
              </Link>
            ))}
          </span>
          <span className={styles.toggle} role="group" aria-label="days">
            {DAY_CHOICES.map((n) => (
              <Link key={n} href={href(groupBy, n)} aria-current={n === days ? "true" : undefined}>
                {n} days
              </Link>
            ))}
          </span>
        </nav>
      </div>
      {shown.error && (
        <p className="error" role="alert">
          Could not load the costs: {shown.error.message}
        </p>
      )}
      {doc === undefined && !shown.error && (
        <p className="quiet" role="status">
          Loading…
        </p>
      )}
      {doc !== undefined && (
        <p className="quiet small" data-testid="day-boundary">
          Days run midnight to midnight in <strong>{doc.timezone}</strong> (the server&apos;s day boundary, where
          costs fall and caps reset); times are shown in your own timezone.
        </p>
      )}
      <TodayPanel budgets={budgets.data} costs={byAgent.data} now={now} error={budgets.error} />
      {doc !== undefined && doc.days.length === 0 && <FirstRun project={project} />}
      {doc !== undefined && doc.days.length > 0 && (
        <Body
          groupBy={groupBy}
          days={days}
          periods={periods(doc.until, days)}
          tz={doc.timezone}
          chart={doc}
          agents={byAgent.data}
          models={byModel.data}
          cap={budgets.data?.find((b) => b.agent === null)?.cap_usd ?? null}
        />
      )}
    </section>
  );
}

function Body({
  groupBy,
  days,
  periods: p,
  tz,
  chart,
  agents,
  models,
  cap,
}: {
  groupBy: Grouping;
  days: number;
  periods: Periods;
  tz: string;
  chart: NonNullable<ReturnType<typeof useDailyCosts>["data"]>;
  agents: ReturnType<typeof useDailyCosts>["data"];
  models: ReturnType<typeof useDailyCosts>["data"];
  cap: string | null;
}) {
  const lines = byGroup(chart, groupBy, p);
  const top = lines.filter((l) => l.now.cost > 0 || l.before.cost > 0).map((l) => l.group);
  // the biggest spenders, in the order of their names: an agent keeps its colour whatever it spends
  // (the evals view colours agents in the same order)
  const named = top.slice(0, CHART_GROUPS).sort((a, b) => (a ?? "").localeCompare(b ?? ""));
  const groups = top.length > CHART_GROUPS ? [...named, OTHERS] : named;
  // the period's totals by agent: a run that called two models is one successful run, not two
  const perAgent = agents === undefined ? lines : byGroup(agents, "agent", p);
  const now = total(perAgent, "now");
  const before = total(perAgent, "before");
  const delta = change(now.cost, before.cost);
  const link = (filters: Record<string, string>) => runsHref(filters, p.current.first, p.current.last, tz);

  return (
    <>
      <h2 className={styles.h2}>
        Spend per day by {groupBy}, last {days} days
      </h2>
      <SpendChart
        days={chartDays(chart, groupBy, p.current, groups)}
        groups={groups}
        cap={cap === null ? null : Number(cap)}
        label={`Spend per day by ${groupBy} from ${p.current.first} to ${p.current.last}`}
      />
      <dl className={styles.figures} aria-label="the period">
        <div>
          <dt>Spent</dt>
          <dd data-testid="period-spend">{formatUsd(now.cost)}</dd>
          <dd className="quiet small">
            {delta === null
              ? `nothing spent the ${days} days before`
              : `${delta >= 0 ? "+" : ""}${Math.round(delta * 100)}% against ${formatUsd(before.cost)} the ${days} days before`}
          </dd>
        </div>
        <div>
          <dt>Successful runs</dt>
          <dd>
            <Link href={link({ status: "succeeded" })} data-testid="succeeded-total">
              {agents === undefined ? "…" : formatCount(now.succeeded)}
            </Link>
          </dd>
          <dd className="quiet small">{formatUsd(now.succeeded > 0 ? now.cost / now.succeeded : null)} each</dd>
        </div>
        <div>
          <dt>Model calls</dt>
          <dd>{formatCount(now.calls)}</dd>
          <dd className="quiet small">
            <span data-testid="unpriced-total">{formatCount(now.unpriced)}</span> at an unknown price
          </dd>
        </div>
        <div>
          <dt>Refused by a cap</dt>
          <dd>
            <Link href={link({ refused_by_cap: "true" })} data-testid="refused-total">
              {formatCount(now.refused)}
            </Link>
          </dd>
          <dd className="quiet small">calls not made</dd>
        </div>
      </dl>
      {now.unpriced > 0 && (
        <p className="quiet small">
          Calls at an unknown price count as $0 here: set a price for their model (Settings → Prices, or{" "}
          <code>POST /v1/prices</code>) and they are priced from then on.
        </p>
      )}
      <h2 className={styles.h2}>By agent</h2>
      {agents !== undefined && <GroupTable doc={agents} by="agent" periods={p} days={days} tz={tz} />}
      <h2 className={styles.h2}>By model</h2>
      {models !== undefined && <GroupTable doc={models} by="model" periods={p} days={days} tz={tz} />}
    </>
  );
}

function FirstRun({ project }: { project: string }) {
  const origin = typeof window === "undefined" ? "" : window.location.origin;
  return (
    <div className="empty" data-testid="costs-empty">
      <p>
        No model calls in <strong>{project}</strong> in these days yet. Costs appear as soon as an agent sends a run
        with model calls; with the Python SDK (see docs/sdk.md):
      </p>
      <pre className={styles.code}>
        {`export CONTROLROOM_URL=${origin} CONTROLROOM_API_KEY=cr_...   # a key: Settings → API keys

import openai, controlroom
from controlroom.sdk.integrations import instrument_openai

controlroom.init()  # reads CONTROLROOM_URL and CONTROLROOM_API_KEY
client = instrument_openai(openai.OpenAI())

@controlroom.run("my-agent")
def answer(question: str) -> str:
    reply = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": question}])
    return reply.choices[0].message.content`}
      </pre>
      <p>
        Each instrumented OpenAI or Anthropic call is priced from its tokens; a daily cap
        (<code>controlroom budgets set --project {project} --cap-usd 10</code>) refuses calls before they are made.
      </p>
    </div>
  );
}
