"use client";
/**
 * The span tree with its waterfall, virtualised by hand: rows have one fixed height, so the rows
 * on screen follow from the scroll offset alone and only those (plus a few either side) are in the
 * DOM — a 2,000-span run renders a few dozen rows. Bars are placed in a time window: the whole run
 * (fit), or a zoomed part of it.
 */
import { useEffect, useRef, useState, type CSSProperties } from "react";

import { formatDuration, formatUsd } from "@/lib/format";

import styles from "./run.module.css";
import type { Node, Tree } from "./tree";

export const ROW_HEIGHT = 28;
const OVERSCAN = 8;

export type Colour = "status" | "cost";

interface Props {
  tree: Tree;
  rows: Node[];
  selected: string | null;
  collapsed: Set<string>;
  window: [number, number];
  colour: Colour;
  onSelect: (spanId: string) => void;
  onToggle: (spanId: string) => void;
  /** Bumped to scroll the selected row into view (a jump, a page opened on a span). */
  reveal: number;
}

function costColour(share: number): string {
  const light = 92 - Math.round(Math.min(1, share) * 52); // pale to deep orange
  return `hsl(28 90% ${light}%)`;
}

export function SpanTree({ tree, rows, selected, collapsed, window, colour, onSelect, onToggle, reveal }: Props) {
  const box = useRef<HTMLDivElement>(null);
  const [offset, setOffset] = useState(0);
  const [height, setHeight] = useState(480);

  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const measure = () => setHeight(el.clientHeight || 480);
    measure();
    const observer = new ResizeObserver(measure);
    observer.observe(el);
    return () => observer.disconnect();
  }, []);

  useEffect(() => {
    const el = box.current;
    if (!el || selected === null) return;
    const at = rows.findIndex((n) => n.span.span_id === selected);
    if (at < 0) return;
    const top = at * ROW_HEIGHT;
    if (top < el.scrollTop || top + ROW_HEIGHT > el.scrollTop + el.clientHeight) {
      el.scrollTop = Math.max(0, top - el.clientHeight / 2);
      setOffset(el.scrollTop);
    }
    // only when asked (reveal), not on every selection by click
  }, [reveal]);

  const first = Math.max(0, Math.floor(offset / ROW_HEIGHT) - OVERSCAN);
  const last = Math.min(rows.length, Math.ceil((offset + height) / ROW_HEIGHT) + OVERSCAN);
  const [w0, w1] = window;
  const scale = 100 / Math.max(1e-6, w1 - w0);
  const byId = tree.byId;

  const bar = (n: Node): CSSProperties | null => {
    if (n.start === null) return null;
    const end = n.end ?? n.start;
    if (end < w0 || n.start > w1) return null;
    const left = (Math.max(n.start, w0) - w0) * scale;
    const width = Math.max(0.3, (Math.min(end, w1) - Math.max(n.start, w0)) * scale);
    const style: CSSProperties = { left: `${left}%`, width: `${width}%` };
    if (colour === "cost") {
      style.background = n.selfUsd > 0 ? costColour(n.selfUsd / (tree.maxSelfUsd || 1)) : "#e4e7ee";
    }
    return style;
  };

  return (
    <div
      ref={box}
      className={styles.treeBox}
      onScroll={(e) => setOffset(e.currentTarget.scrollTop)}
      role="tree"
      aria-label="spans"
      data-rows={rows.length}
    >
      <div style={{ height: rows.length * ROW_HEIGHT, position: "relative" }}>
        {rows.slice(first, last).map((n, i) => {
          const s = n.span;
          const id = s.span_id;
          const style = bar(n);
          const linked = s.retry_of ?? s.fallback_from;
          const linkedName = linked ? (byId.get(linked)?.span.name ?? linked) : null;
          const isCollapsed = collapsed.has(id);
          return (
            <div
              key={id}
              role="treeitem"
              aria-selected={id === selected}
              aria-expanded={n.hasChildren ? !isCollapsed : undefined}
              aria-level={n.depth + 1}
              data-span={id}
              className={`${styles.row} ${id === selected ? styles.rowSelected : ""} ${s.status === "error" ? styles.rowError : ""}`}
              style={{ top: (first + i) * ROW_HEIGHT, height: ROW_HEIGHT }}
              onClick={() => onSelect(id)}
            >
              <div className={styles.label} style={{ paddingLeft: `${0.3 + n.depth * 0.9}rem` }}>
                {n.hasChildren ? (
                  <button
                    type="button"
                    className={styles.toggle}
                    aria-label={isCollapsed ? `expand ${s.name ?? id}` : `collapse ${s.name ?? id}`}
                    onClick={(e) => {
                      e.stopPropagation();
                      onToggle(id);
                    }}
                  >
                    {isCollapsed ? "▸" : "▾"}
                  </button>
                ) : (
                  <span className={styles.toggle} />
                )}
                <span className={`${styles.kind} ${styles[`kind_${s.kind ?? "other"}`] ?? ""}`}>{s.kind ?? "span"}</span>
                <span className={styles.name} title={s.name ?? ""}>
                  {s.name ?? id}
                </span>
                {s.status === "error" && <span className={styles.errMark} title={s.error?.type ?? "error"}>✕</span>}
                {isCollapsed && n.errorsBelow > 0 && (
                  <span className={styles.errBelow} title="errors inside this collapsed span">
                    {n.errorsBelow} error{n.errorsBelow === 1 ? "" : "s"} inside
                  </span>
                )}
                {linked && (
                  <button
                    type="button"
                    className={styles.linked}
                    title={`${s.retry_of ? "a retry of" : "a fallback from"} ${linkedName}`}
                    onClick={(e) => {
                      e.stopPropagation();
                      onSelect(linked);
                    }}
                  >
                    {s.retry_of ? "↻ retry of" : "⤳ fallback from"} {linkedName}
                  </button>
                )}
              </div>
              <div className={styles.lane}>
                {style && (
                  <div
                    className={`${styles.bar} ${s.status === "error" ? styles.barError : s.status === "running" ? styles.barRunning : ""}`}
                    style={style}
                  />
                )}
                <span className={styles.barText}>
                  {formatDuration(n.end !== null && n.start !== null ? n.end - n.start : null)}
                  {s.cost_usd !== null && ` · ${formatUsd(s.cost_usd)}`}
                </span>
              </div>
            </div>
          );
        })}
      </div>
    </div>
  );
}
