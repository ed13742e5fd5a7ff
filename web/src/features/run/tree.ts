/**
 * The span tree as the page walks it: every span once in depth-first order with its depth, its
 * parent, its self time and self cost, and how many errors its descendants hold (shown on a
 * collapsed parent). Built once per answer; the visible rows are a filter of it.
 */
import { parseTime } from "@/lib/time";

import type { Span } from "./queries";

export interface Node {
  span: Span;
  depth: number;
  parent: string | null;
  hasChildren: boolean;
  start: number | null; // ms since the epoch
  end: number | null;
  selfMs: number;
  selfUsd: number;
  errorsBelow: number; // error spans among the descendants
}

export interface Tree {
  order: Node[]; // depth-first, children by start
  byId: Map<string, Node>;
  errors: string[]; // error spans, in tree order
  t0: number;
  t1: number;
  maxSelfUsd: number;
}

function ms(value: string | null): number | null {
  if (!value) return null;
  const t = parseTime(value).getTime();
  return Number.isFinite(t) ? t : null;
}

function usd(value: string | null): number {
  const n = value === null ? 0 : Number(value);
  return Number.isFinite(n) ? n : 0;
}

/** The length of the union of intervals (children may overlap: parallel calls). */
function covered(intervals: [number, number][]): number {
  const sorted = intervals.filter(([a, b]) => b > a).sort((x, y) => x[0] - y[0]);
  let total = 0;
  let from = -Infinity;
  let to = -Infinity;
  for (const [a, b] of sorted) {
    if (a > to) {
      if (to > from) total += to - from;
      from = a;
      to = b;
    } else if (b > to) {
      to = b;
    }
  }
  if (to > from) total += to - from;
  return total;
}

export function buildTree(roots: Span[], runStart: string | null, runEnd: string | null, now: number): Tree {
  const order: Node[] = [];
  const byId = new Map<string, Node>();
  const errors: string[] = [];
  let t0 = ms(runStart) ?? Infinity;
  let t1 = ms(runEnd) ?? -Infinity;
  let maxSelfUsd = 0;

  // Iterative depth-first walk (a deep chain must not overflow the stack).
  const stack: { span: Span; depth: number; parent: string | null }[] = [];
  for (let i = roots.length - 1; i >= 0; i--) {
    const r = roots[i];
    if (r) stack.push({ span: r, depth: 0, parent: null });
  }
  while (stack.length > 0) {
    const item = stack.pop();
    if (!item) break;
    const { span, depth, parent } = item;
    const start = ms(span.started_at);
    const end = ms(span.ended_at) ?? (span.status === "running" ? now : start);
    const selfUsd = span.rollup ? 0 : usd(span.cost_usd);
    maxSelfUsd = Math.max(maxSelfUsd, selfUsd);
    const node: Node = {
      span,
      depth,
      parent,
      hasChildren: span.children.length > 0,
      start,
      end,
      selfMs: 0,
      selfUsd,
      errorsBelow: 0,
    };
    order.push(node);
    byId.set(span.span_id, node);
    if (span.status === "error") errors.push(span.span_id);
    if (start !== null) t0 = Math.min(t0, start);
    if (end !== null) t1 = Math.max(t1, end);
    for (let i = span.children.length - 1; i >= 0; i--) {
      const c = span.children[i];
      if (c) stack.push({ span: c, depth: depth + 1, parent: span.span_id });
    }
  }
  // Self time and errors below, children before parents (reverse depth-first order).
  const childSpans = new Map<string, [number, number][]>();
  for (let i = order.length - 1; i >= 0; i--) {
    const n = order[i];
    if (!n) continue;
    const own = n.start !== null && n.end !== null ? n.end - n.start : 0;
    n.selfMs = Math.max(0, own - covered(childSpans.get(n.span.span_id) ?? []));
    if (n.parent !== null) {
      const p = byId.get(n.parent);
      if (p) {
        p.errorsBelow += n.errorsBelow + (n.span.status === "error" ? 1 : 0);
        if (n.start !== null && n.end !== null) {
          const list = childSpans.get(n.parent) ?? [];
          list.push([n.start, n.end]);
          childSpans.set(n.parent, list);
        }
      }
    }
  }
  if (!Number.isFinite(t0)) t0 = now;
  if (!Number.isFinite(t1) || t1 <= t0) t1 = t0 + 1;
  return { order, byId, errors, t0, t1, maxSelfUsd };
}

/** The rows shown: every span whose ancestors are all expanded. */
export function visibleRows(tree: Tree, collapsed: Set<string>): Node[] {
  if (collapsed.size === 0) return tree.order;
  const out: Node[] = [];
  let hideBelow = Infinity; // depth under a collapsed span
  for (const n of tree.order) {
    if (n.depth > hideBelow) continue;
    hideBelow = Infinity;
    out.push(n);
    if (collapsed.has(n.span.span_id) && n.hasChildren) hideBelow = n.depth;
  }
  return out;
}

/** The span's ancestors (to expand them when it is jumped to). */
export function ancestors(tree: Tree, spanId: string): string[] {
  const out: string[] = [];
  let p = tree.byId.get(spanId)?.parent ?? null;
  while (p !== null) {
    out.push(p);
    p = tree.byId.get(p)?.parent ?? null;
  }
  return out;
}
