"use client";
/**
 * One run: its header (status, duration, cost and its share of today's cap, scores, approvals),
 * its errors one jump at a time, the span tree with its waterfall, and the selected span (in the
 * URL: `&span=`). A failed run opens on its failing span. While the run is running, it is asked
 * again every two seconds.
 */
import Link from "next/link";
import { useRouter, useSearchParams } from "next/navigation";
import { useCallback, useEffect, useMemo, useState } from "react";

import { Status } from "@/components/Status";
import { formatCount, formatDuration, formatShare, formatUsd } from "@/lib/format";
import { formatTime, fromNow, useNow } from "@/lib/time";

import { capFor, isRunId, useBudgets, useRun, type Run } from "./queries";
import styles from "./run.module.css";
import { SpanPanel } from "./SpanPanel";
import { SpanTree, type Colour } from "./SpanTree";
import { ancestors, buildTree, visibleRows, type Tree } from "./tree";

const RANKED = 8;

function scoreValue(value: number | null, label: string | null): string {
  if (label) return label;
  if (value === null) return "—";
  return Number.isInteger(value) ? String(value) : value.toFixed(2);
}

function Header({ run, now }: { run: Run; now: number }) {
  const budgets = useBudgets();
  const cap = capFor(budgets.data, run.agent);
  const cost = run.cost_usd === null ? null : Number(run.cost_usd);
  const capUsd = cap ? Number(cap.cap_usd) : null;
  return (
    <header className={styles.header}>
      <div className={styles.title}>
        <Status status={run.status} />
        <h1>{run.agent ?? "(no agent)"}</h1>
        <span className="mono small quiet">{run.run_id}</span>
      </div>
      {run.error && (
        <p className="error" role="alert" aria-label="run error">
          <strong>{run.error.type}</strong>
          {run.error.message ? `: ${run.error.message}` : ""}
        </p>
      )}
      <dl className={styles.stats}>
        <div>
          <dt>Started</dt>
          <dd title={run.started_at ?? ""}>
            {run.started_at ? formatTime(run.started_at) : "—"}
            {run.started_at && <div className="quiet small">{fromNow(run.started_at, now)}</div>}
          </dd>
        </div>
        <div>
          <dt>Duration</dt>
          <dd>{run.status === "running" ? "running…" : formatDuration(run.duration_ms)}</dd>
        </div>
        <div>
          <dt>Cost</dt>
          <dd aria-label="run cost">
            {formatUsd(run.cost_usd)}
            {cap && capUsd !== null && capUsd > 0 && cost !== null && (
              <div className="quiet small">
                {formatShare(cost / capUsd, 2)} of {cap.agent ? `${cap.agent}'s` : "the project's"} daily cap (
                {formatUsd(cap.cap_usd)})
              </div>
            )}
            {run.unpriced_calls > 0 && <div className="quiet small">{run.unpriced_calls} call(s) without a price</div>}
          </dd>
        </div>
        <div>
          <dt>Tokens</dt>
          <dd>
            {formatCount(run.usage.input_tokens, true)} in · {formatCount(run.usage.output_tokens, true)} out
          </dd>
        </div>
        <div>
          <dt>Spans</dt>
          <dd>
            {formatCount(run.counts.span)}
            <div className="quiet small">
              {run.counts.llm} LLM · {run.counts.tool} tool
              {run.counts.retry > 0 && ` · ${run.counts.retry} retries`}
              {run.counts.fallback > 0 && ` · ${run.counts.fallback} fallbacks`}
              {run.refused_calls > 0 && ` · ${run.refused_calls} refused by the cap`}
            </div>
          </dd>
        </div>
        {(run.model || run.agent_version || run.environment) && (
          <div>
            <dt>Model · version</dt>
            <dd>{[run.model, run.agent_version, run.environment].filter(Boolean).join(" · ")}</dd>
          </div>
        )}
      </dl>
      {run.scores.length > 0 && (
        <div className={styles.chips} aria-label="scores">
          {run.scores.map((s, i) => (
            <span key={i} className={styles.chip} title={s.comment ?? s.evaluator ?? s.source}>
              {s.name}: <strong>{scoreValue(s.value, s.label)}</strong>{" "}
              <span className="quiet">({s.evaluator ?? s.source})</span>
            </span>
          ))}
        </div>
      )}
      {run.approvals.length > 0 && (
        <div className={styles.chips} aria-label="approvals">
          {run.approvals.map((a) => (
            <Link key={a.id} href={`/approvals/view/?id=${a.id}`} className={styles.chip}>
              approval: {a.action} <Status status={a.status} />
            </Link>
          ))}
        </div>
      )}
    </header>
  );
}

function Ranking({ tree, onSelect }: { tree: Tree; onSelect: (id: string) => void }) {
  const byTime = useMemo(
    () => [...tree.order].sort((a, b) => b.selfMs - a.selfMs).filter((n) => n.selfMs > 0).slice(0, RANKED),
    [tree],
  );
  const byCost = useMemo(
    () => [...tree.order].sort((a, b) => b.selfUsd - a.selfUsd).filter((n) => n.selfUsd > 0).slice(0, RANKED),
    [tree],
  );
  return (
    <div className={styles.ranking}>
      <section aria-label="self time ranking">
        <h4>Most self time</h4>
        <ol>
          {byTime.map((n) => (
            <li key={n.span.span_id}>
              <button type="button" className={styles.inlineLink} onClick={() => onSelect(n.span.span_id)}>
                {n.span.name ?? n.span.span_id}
              </button>{" "}
              <span className="quiet">{formatDuration(n.selfMs)}</span>
            </li>
          ))}
        </ol>
      </section>
      <section aria-label="self cost ranking">
        <h4>Most self cost</h4>
        {byCost.length === 0 ? (
          <p className="quiet small">No priced calls.</p>
        ) : (
          <ol>
            {byCost.map((n) => (
              <li key={n.span.span_id}>
                <button type="button" className={styles.inlineLink} onClick={() => onSelect(n.span.span_id)}>
                  {n.span.name ?? n.span.span_id}
                </button>{" "}
                <span className="quiet">{formatUsd(n.selfUsd)}</span>
              </li>
            ))}
          </ol>
        )}
      </section>
    </div>
  );
}

export function RunPage() {
  const params = useSearchParams();
  const router = useRouter();
  const id = (params.get("id") ?? "").toLowerCase();
  const spanParam = params.get("span");
  const run = useRun(id);
  const now = useNow(2_000);
  const data = run.data;
  const running = data?.status === "running";
  const tree = useMemo(
    () => (data ? buildTree(data.spans, data.started_at, data.ended_at, running ? now : 0) : null),
    // a finished run's tree does not depend on the clock
    [data, running, running ? now : 0],
  );
  const [collapsed, setCollapsed] = useState<Set<string>>(() => new Set());
  const [colour, setColour] = useState<Colour>("status");
  const [zoom, setZoom] = useState<[number, number] | null>(null);
  const [reveal, setReveal] = useState(0);

  // The selected span: the one just picked (until the URL says it too), the URL's, else a failed
  // run's failing span.
  const [picked, setPicked] = useState<string | null>(null);
  useEffect(() => setPicked(null), [spanParam]);
  const selected =
    picked ?? spanParam ?? (data && data.status !== "running" ? (data.failing_span_id ?? null) : null);
  const select = useCallback(
    (spanId: string) => {
      if (tree) {
        const up = ancestors(tree, spanId);
        if (up.some((a) => collapsed.has(a))) {
          setCollapsed((c) => {
            const next = new Set(c);
            up.forEach((a) => next.delete(a));
            return next;
          });
        }
      }
      setPicked(spanId);
      setReveal((r) => r + 1); // scrolled to when out of view
      router.replace(`/runs/view/?id=${id}&span=${spanId}`, { scroll: false });
    },
    [tree, collapsed, router, id],
  );

  // Opened on a span (the URL's or the failing one): bring it into view once the tree is there.
  const [revealedFor, setRevealedFor] = useState<string | null>(null);
  useEffect(() => {
    if (tree && selected && revealedFor !== `${id}/${selected}` && tree.byId.has(selected)) {
      setRevealedFor(`${id}/${selected}`);
      setReveal((r) => r + 1);
    }
  }, [tree, selected, id, revealedFor]);

  const rows = useMemo(() => (tree ? visibleRows(tree, collapsed) : []), [tree, collapsed]);

  // Keys: j / ↓ the next row, k / ↑ the previous, ← collapses the selected span, → expands it.
  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      const t = e.target;
      if (e.altKey || e.ctrlKey || e.metaKey) return;
      if (t instanceof HTMLElement && (t.isContentEditable || ["INPUT", "SELECT", "TEXTAREA"].includes(t.tagName))) {
        return;
      }
      const at = selected ? rows.findIndex((n) => n.span.span_id === selected) : -1;
      const step = e.key === "j" || e.key === "ArrowDown" ? 1 : e.key === "k" || e.key === "ArrowUp" ? -1 : 0;
      if (step !== 0) {
        const next = rows[at < 0 ? 0 : Math.min(rows.length - 1, Math.max(0, at + step))];
        if (next) {
          e.preventDefault();
          select(next.span.span_id);
        }
      } else if ((e.key === "ArrowLeft" || e.key === "ArrowRight") && selected && tree?.byId.get(selected)?.hasChildren) {
        e.preventDefault();
        const collapse = e.key === "ArrowLeft";
        setCollapsed((c) => {
          const next = new Set(c);
          if (collapse) next.add(selected);
          else next.delete(selected);
          return next;
        });
      }
    };
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  }, [rows, selected, select, tree]);

  if (!isRunId(id)) {
    return (
      <section>
        <h1>Run</h1>
        <p className="error">
          {id ? `“${id}” is not a run id (32 hex digits).` : "No run given."} <Link href="/runs/">All runs</Link>
        </p>
      </section>
    );
  }
  if (run.error) {
    return (
      <section>
        <h1>Run</h1>
        <p className="error" role="alert">
          {run.error.message} <Link href="/runs/">All runs</Link>
        </p>
      </section>
    );
  }
  if (!data || !tree) {
    return (
      <p className="quiet" role="status">
        Loading the run…
      </p>
    );
  }

  const node = selected ? tree.byId.get(selected) : undefined;
  const errors = tree.errors;
  const at = selected ? errors.indexOf(selected) : -1;
  const jumpError = (step: 1 | -1) => {
    if (errors.length === 0) return;
    let i: number;
    if (at >= 0) i = (at + step + errors.length) % errors.length;
    else {
      // from the selection's place in the tree, the next (or previous) error
      const pos = selected ? tree.order.findIndex((n) => n.span.span_id === selected) : -1;
      const order = errors.map((e) => tree.order.findIndex((n) => n.span.span_id === e));
      if (step === 1) {
        i = order.findIndex((o) => o > pos);
        if (i < 0) i = 0;
      } else {
        i = order.length - 1;
        while (i > 0 && (order[i] ?? 0) >= pos && pos >= 0) i--;
      }
    }
    const target = errors[i];
    if (target) select(target);
  };
  const [w0, w1] = zoom ?? [tree.t0, tree.t1];
  const zoomBy = (factor: number) => {
    const focus = node?.start !== null && node?.start !== undefined ? node.start : (w0 + w1) / 2;
    const width = Math.max(1, (w1 - w0) * factor);
    if (width >= tree.t1 - tree.t0) return setZoom(null);
    let from = Math.max(tree.t0, focus - width / 2);
    const to = Math.min(tree.t1, from + width);
    from = Math.max(tree.t0, to - width);
    setZoom([from, to]);
  };

  return (
    <section className={styles.page}>
      <p className="small">
        <Link href="/runs/">← Runs</Link>
        {running && <span className="quiet"> · live: refreshed every 2 seconds</span>}
      </p>
      <Header run={data} now={now} />
      <div className={styles.toolbar}>
        <span aria-label="errors" className={errors.length > 0 ? styles.errorsCount : "quiet"}>
          {errors.length === 0
            ? "No errors"
            : `${errors.length} error${errors.length === 1 ? "" : "s"}${at >= 0 ? ` (this is ${at + 1})` : ""}`}
        </span>
        <button type="button" onClick={() => jumpError(-1)} disabled={errors.length === 0}>
          ↑ Previous error
        </button>
        <button type="button" onClick={() => jumpError(1)} disabled={errors.length === 0}>
          Jump to next error ↓
        </button>
        <span className={styles.gap} />
        <button type="button" onClick={() => zoomBy(0.5)} aria-label="zoom in">
          Zoom in
        </button>
        <button type="button" onClick={() => zoomBy(2)} disabled={zoom === null} aria-label="zoom out">
          Zoom out
        </button>
        <button type="button" onClick={() => setZoom(null)} disabled={zoom === null}>
          Fit
        </button>
        <button type="button" onClick={() => setCollapsed(new Set())} disabled={collapsed.size === 0}>
          Expand all
        </button>
        <label className="small">
          Colour by{" "}
          <select value={colour} onChange={(e) => setColour(e.target.value === "cost" ? "cost" : "status")}>
            <option value="status">status</option>
            <option value="cost">self cost</option>
          </select>
        </label>
      </div>
      <p className="quiet small">
        Keys: j / k (or ↓ / ↑) move, ← / → collapse and expand. {formatCount(tree.order.length)} spans · window {formatDuration(w1 - w0)}
        {zoom && ` from +${formatDuration(w0 - tree.t0)}`}
      </p>
      <div className={styles.body}>
        <div className={styles.treeCol}>
          <SpanTree
            tree={tree}
            rows={rows}
            selected={selected}
            collapsed={collapsed}
            window={[w0, w1]}
            colour={colour}
            reveal={reveal}
            onSelect={select}
            onToggle={(sid) =>
              setCollapsed((c) => {
                const next = new Set(c);
                if (next.has(sid)) next.delete(sid);
                else next.add(sid);
                return next;
              })
            }
          />
          <Ranking tree={tree} onSelect={select} />
        </div>
        {node ? (
          <SpanPanel
            key={node.span.span_id}
            runId={id}
            node={node}
            tree={tree}
            running={running}
            approvals={data.approvals}
            onSelect={select}
          />
        ) : (
          <aside className={styles.panel}>
            <p className="quiet">Select a span to see its input, output, tokens and cost.</p>
          </aside>
        )}
      </div>
    </section>
  );
}
