/**
 * Spend per day, stacked by agent or model, with the project's daily cap drawn across: a
 * hand-drawn SVG (no chart library). A cap far above the spend would flatten every bar, so past
 * three times the tallest day it is named at the top instead of drawn to scale.
 */
import { formatUsd } from "@/lib/format";

import { shortDay } from "./days";
import type { ChartDay } from "./model";
import styles from "./costs.module.css";

const W = 960;
const H = 260;
const PAD = { left: 64, right: 12, top: 22, bottom: 34 };
export const PALETTE = ["#2456c9", "#e08a00", "#0f8a6a", "#a23bb5", "#7a5230", "#0e7490", "#9aa51f", "#d4589b"];
const OTHER = "#9aa3b2";

export function colour(index: number): string {
  return PALETTE[index] ?? OTHER;
}

/** A round step for the axis: 1, 2 or 5 times a power of ten. */
function niceStep(max: number): number {
  const rough = max / 4;
  const power = 10 ** Math.floor(Math.log10(rough));
  const unit = rough / power;
  return (unit <= 1 ? 1 : unit <= 2 ? 2 : unit <= 5 ? 5 : 10) * power;
}

export function SpendChart({
  days,
  groups,
  cap,
  label,
}: {
  days: ChartDay[];
  groups: (string | null)[];
  cap: number | null;
  label: string;
}) {
  const tallest = Math.max(0, ...days.map((d) => d.total));
  const capDrawn = cap !== null && cap > 0 && (tallest === 0 ? cap : cap <= tallest * 3);
  const top = Math.max(tallest, capDrawn && cap !== null ? cap : 0) * 1.08 || 1;
  const step = niceStep(top);
  const ticks: number[] = [];
  for (let v = 0; v <= top + 1e-12; v += step) ticks.push(v);
  const plotW = W - PAD.left - PAD.right;
  const plotH = H - PAD.top - PAD.bottom;
  const y = (v: number) => PAD.top + plotH - (v / top) * plotH;
  const slot = plotW / Math.max(days.length, 1);
  const bar = Math.max(2, Math.min(38, slot * 0.7));
  const every = Math.ceil(days.length / 15); // at most ~15 day labels

  return (
    <figure className={styles.chart}>
      <svg viewBox={`0 0 ${W} ${H}`} role="img" aria-label={label} data-testid="spend-chart">
        {ticks.map((v) => (
          <g key={v}>
            <line x1={PAD.left} x2={W - PAD.right} y1={y(v)} y2={y(v)} className={styles.grid} />
            <text x={PAD.left - 6} y={y(v) + 4} textAnchor="end" className={styles.axis}>
              {formatUsd(v)}
            </text>
          </g>
        ))}
        {days.map((d, i) => {
          const x = PAD.left + i * slot + (slot - bar) / 2;
          let base = 0;
          return (
            <g key={d.day} data-day={d.day} data-testid="spend-day">
              <title>
                {`${shortDay(d.day)}: ${formatUsd(d.total)}` +
                  d.parts
                    .filter((p) => p.cost > 0)
                    .map((p) => `\n${p.group ?? "(none)"}: ${formatUsd(p.cost)}`)
                    .join("")}
              </title>
              {d.parts.map((p, j) => {
                if (p.cost <= 0) return null;
                const y0 = y(base);
                base += p.cost;
                return (
                  <rect
                    key={p.group ?? ""}
                    x={x}
                    width={bar}
                    y={y(base)}
                    height={Math.max(0.5, y0 - y(base))}
                    fill={colour(groups.indexOf(p.group) === -1 ? j : groups.indexOf(p.group))}
                  />
                );
              })}
              {i % every === 0 && (
                <text x={x + bar / 2} y={H - PAD.bottom + 16} textAnchor="middle" className={styles.axis}>
                  {shortDay(d.day)}
                </text>
              )}
            </g>
          );
        })}
        {cap !== null && cap > 0 && capDrawn && (
          <g data-testid="cap-line">
            <line x1={PAD.left} x2={W - PAD.right} y1={y(cap)} y2={y(cap)} className={styles.cap} />
            <text x={W - PAD.right} y={y(cap) - 5} textAnchor="end" className={styles.capLabel}>
              daily cap {formatUsd(cap)}
            </text>
          </g>
        )}
        {cap !== null && cap > 0 && !capDrawn && (
          <text x={W - PAD.right} y={14} textAnchor="end" className={styles.capLabel} data-testid="cap-line">
            daily cap {formatUsd(cap)} ↑ (above the scale: {Math.round(cap / Math.max(tallest, 1e-9))}× the highest day)
          </text>
        )}
      </svg>
      <figcaption className={styles.legend} aria-label="legend">
        {groups.map((g, i) => (
          <span key={g ?? ""} data-testid="legend-item">
            <i style={{ background: colour(i) }} />
            {g ?? "(none)"}
          </span>
        ))}
        {cap !== null && cap > 0 && (
          <span>
            <i className={styles.capKey} />
            the project&apos;s daily cap (today&apos;s; caps keep no history)
          </span>
        )}
      </figcaption>
    </figure>
  );
}
