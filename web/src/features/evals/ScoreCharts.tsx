/**
 * Scores over time: one small chart per score (evaluator and name), a line per agent, by the day
 * the judged runs started. The vertical scale is the normalised score (0..1, 1 the best) when the
 * evaluator gives one, else the mean value from its lowest to its highest.
 */
import { formatCount } from "@/lib/format";

import { colour } from "@/features/costs/SpendChart";
import { addDays, daysBetween, shortDay } from "@/features/costs/days";
import type { DailyScore } from "./queries";
import styles from "./evals.module.css";

const W = 320;
const H = 120;
const PAD = { left: 30, right: 8, top: 8, bottom: 18 };

interface Series {
  agent: string;
  points: Map<string, { v: number; n: number }>;
}

interface Panel {
  key: string;
  name: string;
  evaluator: string | null;
  normalised: boolean;
  series: Series[];
}

function panels(rows: DailyScore[]): Panel[] {
  const byKey = new Map<string, Panel>();
  for (const r of rows) {
    const key = `${r.evaluator ?? r.source}\u0000${r.name}`;
    let p = byKey.get(key);
    if (p === undefined) {
      p = { key, name: r.name, evaluator: r.evaluator ?? null, normalised: true, series: [] };
      byKey.set(key, p);
    }
    if (r.mean_normalised === null) p.normalised = false;
  }
  for (const r of rows) {
    const p = byKey.get(`${r.evaluator ?? r.source}\u0000${r.name}`)!;
    const value = p.normalised ? r.mean_normalised : r.mean_value;
    if (value === null || value === undefined) continue;
    const agent = r.agent ?? "(no agent)";
    let s = p.series.find((x) => x.agent === agent);
    if (s === undefined) {
      s = { agent, points: new Map() };
      p.series.push(s);
    }
    const before = s.points.get(r.day); // several versions of one evaluator on one day: weighted mean
    s.points.set(
      r.day,
      before === undefined
        ? { v: value, n: r.scores }
        : { v: (before.v * before.n + value * r.scores) / (before.n + r.scores), n: before.n + r.scores },
    );
  }
  return [...byKey.values()].filter((p) => p.series.length > 0).sort((a, b) => a.key.localeCompare(b.key));
}

export function ScoreCharts({ rows, until }: { rows: DailyScore[]; until: string }) {
  const all = panels(rows);
  const first = rows.reduce((m, r) => (r.day < m ? r.day : m), until);
  const days = daysBetween(first < addDays(until, -29) ? addDays(until, -29) : first, until);
  const agents = [...new Set(all.flatMap((p) => p.series.map((s) => s.agent)))].sort();
  return (
    <div>
      <p className={styles.legend} aria-label="agents">
        {agents.map((a, i) => (
          <span key={a}>
            <i style={{ background: colour(i) }} />
            {a}
          </span>
        ))}
      </p>
      <div className={styles.panels}>
        {all.map((p) => (
          <ScorePanel key={p.key} panel={p} days={days} agents={agents} />
        ))}
      </div>
    </div>
  );
}

function ScorePanel({ panel, days, agents }: { panel: Panel; days: string[]; agents: string[] }) {
  const values = panel.series.flatMap((s) => [...s.points.values()].map((p) => p.v));
  const lo = panel.normalised ? 0 : Math.min(...values);
  const hi = panel.normalised ? 1 : Math.max(...values);
  const span = hi - lo || 1;
  const plotW = W - PAD.left - PAD.right;
  const plotH = H - PAD.top - PAD.bottom;
  const x = (i: number) => PAD.left + (days.length <= 1 ? plotW / 2 : (i / (days.length - 1)) * plotW);
  const y = (v: number) => PAD.top + plotH - ((v - lo) / span) * plotH;
  const fmt = (v: number) => (panel.normalised ? v.toFixed(2) : Math.abs(v) >= 100 ? v.toFixed(0) : v.toFixed(1));
  return (
    <figure className={styles.panel} data-testid="score-panel">
      <figcaption>
        <strong>{panel.name}</strong>
        {panel.evaluator !== null && panel.evaluator !== panel.name && <span className="quiet small"> · {panel.evaluator}</span>}
        <span className="quiet small">{panel.normalised ? " · 0–1, higher is better" : " · mean value"}</span>
      </figcaption>
      <svg viewBox={`0 0 ${W} ${H}`} role="img" aria-label={`${panel.name} per day and agent`}>
        {[lo, (lo + hi) / 2, hi].map((v) => (
          <g key={v}>
            <line x1={PAD.left} x2={W - PAD.right} y1={y(v)} y2={y(v)} className={styles.grid} />
            <text x={PAD.left - 4} y={y(v) + 3} textAnchor="end" className={styles.axis}>
              {fmt(v)}
            </text>
          </g>
        ))}
        <text x={PAD.left} y={H - 4} className={styles.axis}>
          {days[0] !== undefined ? shortDay(days[0]) : ""}
        </text>
        <text x={W - PAD.right} y={H - 4} textAnchor="end" className={styles.axis}>
          {days.length > 0 ? shortDay(days[days.length - 1]!) : ""}
        </text>
        {panel.series.map((s) => {
          const c = colour(agents.indexOf(s.agent));
          const pts = days
            .map((d, i) => ({ d, i, p: s.points.get(d) }))
            .filter((q): q is { d: string; i: number; p: { v: number; n: number } } => q.p !== undefined);
          return (
            <g key={s.agent}>
              <polyline
                points={pts.map((q) => `${x(q.i)},${y(q.p.v)}`).join(" ")}
                fill="none"
                stroke={c}
                strokeWidth={1.8}
              />
              {pts.map((q) => (
                <circle key={q.d} cx={x(q.i)} cy={y(q.p.v)} r={2.2} fill={c}>
                  <title>{`${s.agent}, ${shortDay(q.d)}: ${fmt(q.p.v)} (${formatCount(q.p.n)} scores)`}</title>
                </circle>
              ))}
            </g>
          );
        })}
      </svg>
    </figure>
  );
}
