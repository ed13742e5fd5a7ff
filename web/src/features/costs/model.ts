/**
 * The figures the costs view shows, worked out from the daily rollup: spend per day and group for
 * the chart, and per group the period's totals against the period before. Amounts are USD as
 * decimal strings from the server; summed here as numbers for display only.
 */
import { addDays, daysBetween } from "./days";
import type { CostRow, DailyCosts, Grouping } from "./queries";

export interface Period {
  first: string;
  last: string;
}

export interface Periods {
  current: Period;
  previous: Period;
}

export function periods(until: string, days: number): Periods {
  const first = addDays(until, -days + 1);
  return {
    current: { first, last: until },
    previous: { first: addDays(first, -days), last: addDays(first, -1) },
  };
}

export interface Totals {
  cost: number;
  calls: number;
  unpriced: number;
  refused: number;
  succeeded: number;
}

const zero = (): Totals => ({ cost: 0, calls: 0, unpriced: 0, refused: 0, succeeded: 0 });

function add(t: Totals, r: CostRow): void {
  t.cost += Number(r.cost_usd ?? 0);
  t.calls += r.calls;
  t.unpriced += r.unpriced_calls;
  t.refused += r.refused_calls;
  t.succeeded += r.succeeded_runs;
}

export function groupOf(r: CostRow, by: Grouping): string | null {
  return (by === "agent" ? r.agent : r.model) ?? null;
}

export interface GroupLine {
  group: string | null; // null: calls without an agent (or model)
  now: Totals;
  before: Totals;
}

/** Per group: this period against the one before, the biggest spender first. */
export function byGroup(doc: DailyCosts, by: Grouping, p: Periods): GroupLine[] {
  const lines = new Map<string | null, GroupLine>();
  for (const r of doc.days) {
    const side = within(r.day, p.current) ? "now" : within(r.day, p.previous) ? "before" : null;
    if (side === null) continue;
    const g = groupOf(r, by);
    let line = lines.get(g);
    if (line === undefined) {
      line = { group: g, now: zero(), before: zero() };
      lines.set(g, line);
    }
    add(line[side], r);
  }
  return [...lines.values()].sort((a, b) => b.now.cost - a.now.cost || b.before.cost - a.before.cost);
}

export function total(lines: GroupLine[], side: "now" | "before"): Totals {
  const t = zero();
  for (const l of lines) {
    for (const k of Object.keys(t) as (keyof Totals)[]) t[k] += l[side][k];
  }
  return t;
}

function within(day: string, p: Period): boolean {
  return day >= p.first && day <= p.last;
}

export interface ChartDay {
  day: string;
  total: number;
  parts: { group: string | null; cost: number }[]; // in the order of `groups`
}

export const OTHERS = "(others)";

/**
 * The chart's days (every day of the period, spend or not) with the spend of each shown group;
 * the groups not shown are summed as OTHERS (listed in `shown` by the caller when there are any).
 */
export function chartDays(doc: DailyCosts, by: Grouping, p: Period, shown: (string | null)[]): ChartDay[] {
  const named = new Set(shown.filter((g) => g !== OTHERS));
  const cost = new Map<string, number>();
  for (const r of doc.days) {
    const g = groupOf(r, by);
    const key = `${r.day}|${named.has(g) ? (g ?? "") : OTHERS}`;
    cost.set(key, (cost.get(key) ?? 0) + Number(r.cost_usd ?? 0));
  }
  return daysBetween(p.first, p.last).map((day) => {
    const parts = shown.map((g) => ({ group: g, cost: cost.get(`${day}|${g ?? ""}`) ?? 0 }));
    return { day, total: parts.reduce((s, x) => s + x.cost, 0), parts };
  });
}

/** The relative change from before to now: null when there was nothing before. */
export function change(now: number, before: number): number | null {
  return before > 0 ? (now - before) / before : null;
}
