"use client";
/**
 * Runs per hour by status and cost per hour against the cap, for the last 24 hours or 7 days:
 * bars drawn by hand in SVG (no chart library). Each bar links to the runs of its hour.
 */
import { formatCount, formatUsd } from "@/lib/format";
import { parseTime } from "@/lib/time";

import { plusHour, runsHref } from "./links";
import s from "./overview.module.css";
import type { SeriesCard } from "./queries";

const STATUSES = [
  ["succeeded", "#1f7a3f"],
  ["running", "#2456c9"],
  ["cancelled", "#8a93a3"],
  ["abandoned", "#c77700"],
  ["failed", "#b42318"],
] as const;
const WIDTH = 720; // the charts' drawing width (they scale to the card's)
const HEIGHT = 110;
const AXIS = 16;

const hourLabel = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const dayLabel = new Intl.DateTimeFormat(undefined, { weekday: "short", day: "numeric" });

const barOf = (card: SeriesCard) => WIDTH / Math.max(1, card.hours.length);

function labels(card: SeriesCard) {
  const bar = barOf(card);
  const every = card.window === "7d" ? 24 : 6;
  return card.hours.flatMap((h, i) => {
    const t = parseTime(h.hour);
    const start = card.window === "7d" ? t.getHours() === 0 : t.getHours() % every === 0;
    return start ? [{ x: i * bar, text: card.window === "7d" ? dayLabel.format(t) : hourLabel.format(t) }] : [];
  });
}

function Axis({ card }: { card: SeriesCard }) {
  return (
    <g>
      {labels(card).map((l) => (
        <g key={l.x}>
          <line x1={l.x} x2={l.x} y1={0} y2={HEIGHT} stroke="#d9dee7" strokeWidth={0.5} />
          <text x={l.x + 2} y={HEIGHT + 12} fontSize={9} fill="#5d6675">
            {l.text}
          </text>
        </g>
      ))}
    </g>
  );
}

export function RunsChart({ card }: { card: SeriesCard }) {
  const totals = card.hours.map((h) => Object.values(h.runs).reduce((a, b) => a + b, 0));
  const max = Math.max(1, ...totals);
  const bar = barOf(card);
  const width = WIDTH;
  return (
    <figure style={{ margin: 0 }}>
      <svg className={s.chart} viewBox={`0 0 ${width} ${HEIGHT + AXIS}`} role="img" aria-label="runs per hour by status">
        <Axis card={card} />
        {card.hours.map((h, i) => {
          let y = HEIGHT;
          return (
            <a key={h.hour} href={runsHref({ since: h.hour, until: plusHour(h.hour) })}>
              <title>{`${formatCount(totals[i])} runs${totals[i] ? ": " : ""}${Object.entries(h.runs)
                .map(([k, v]) => `${v} ${k}`)
                .join(", ")}`}</title>
              <rect x={i * bar} y={0} width={bar} height={HEIGHT} fill="transparent" />
              {STATUSES.map(([status, colour]) => {
                const n = h.runs[status] ?? 0;
                if (!n) return null;
                const height = (n / max) * (HEIGHT - 4);
                y -= height;
                return <rect key={status} x={i * bar + Math.min(1, bar / 5)} y={y} width={Math.max(1, bar - 2)} height={height} fill={colour} />;
              })}
            </a>
          );
        })}
      </svg>
      <figcaption className={s.legend}>
        {STATUSES.map(([status, colour]) => (
          <span key={status}>
            <span className={s.swatch} style={{ background: colour }} />
            {status}
          </span>
        ))}
        <span>most in an hour: {formatCount(max)}</span>
      </figcaption>
    </figure>
  );
}

export function CostChart({ card }: { card: SeriesCard }) {
  const costs = card.hours.map((h) => Number(h.cost_usd));
  const pace = card.cap_usd === null ? null : Number(card.cap_usd) / 24;
  const max = Math.max(1e-9, ...costs, pace ?? 0);
  const bar = barOf(card);
  const width = WIDTH;
  const paceY = pace === null ? null : HEIGHT - (pace / max) * (HEIGHT - 4);
  return (
    <figure style={{ margin: 0 }}>
      <svg className={s.chart} viewBox={`0 0 ${width} ${HEIGHT + AXIS}`} role="img" aria-label="cost per hour">
        <Axis card={card} />
        {card.hours.map((h, i) => {
          const cost = costs[i] ?? 0;
          const height = (cost / max) * (HEIGHT - 4);
          const over = pace !== null && cost > pace;
          return (
            <a key={h.hour} href={runsHref({ since: h.hour, until: plusHour(h.hour) })}>
              <title>{formatUsd(h.cost_usd)}</title>
              <rect x={i * bar} y={0} width={bar} height={HEIGHT} fill="transparent" />
              <rect x={i * bar + Math.min(1, bar / 5)} y={HEIGHT - height} width={Math.max(1, bar - 2)} height={height} fill={over ? "#b42318" : "#2456c9"} />
            </a>
          );
        })}
        {paceY !== null && (
          <line x1={0} x2={width} y1={paceY} y2={paceY} stroke="#9a5b00" strokeDasharray="4 3" strokeWidth={1} />
        )}
      </svg>
      <figcaption className={s.legend}>
        <span>most in an hour: {formatUsd(Math.max(...costs, 0))}</span>
        {pace !== null ? (
          <span>
            dashed: the daily cap ({formatUsd(card.cap_usd)}) spread over 24 hours, {formatUsd(pace)}/h; red bars are above it
          </span>
        ) : (
          <span>no project-wide cap is set</span>
        )}
      </figcaption>
    </figure>
  );
}
