"use client";
/**
 * The selected span: what it was, how long it took, its tokens and cost (and where the cost came
 * from), its error, the approval it asked for, and its input, output and attributes — loaded only
 * now, for this span.
 */
import Link from "next/link";

import { Json } from "@/components/Json";
import { Status } from "@/components/Status";
import { formatCount, formatDuration, formatUsd } from "@/lib/format";
import { formatTime } from "@/lib/time";

import { useSpanPayload, type RunApproval } from "./queries";
import styles from "./run.module.css";
import type { Node, Tree } from "./tree";

const SOURCES: Record<string, string> = {
  reported: "reported by the caller",
  computed: "computed from the tokens and the model's price",
  unknown: "unknown: the model has no price",
};

interface Props {
  runId: string;
  node: Node;
  tree: Tree;
  running: boolean;
  approvals: RunApproval[];
  onSelect: (spanId: string) => void;
}

export function SpanPanel({ runId, node, tree, running, approvals, onSelect }: Props) {
  const s = node.span;
  const payload = useSpanPayload(runId, s.span_id, running && s.status === "running");
  const link = (id: string | null, label: string) => {
    if (!id) return null;
    const target = tree.byId.get(id);
    return (
      <>
        <dt>{label}</dt>
        <dd>
          <button type="button" className={styles.inlineLink} onClick={() => onSelect(id)}>
            {target?.span.name ?? id}
          </button>
        </dd>
      </>
    );
  };
  const retriedBy = tree.order.filter((n) => n.span.retry_of === s.span_id || n.span.fallback_from === s.span_id);
  const asked = approvals.filter((a) => a.span_id === s.span_id);

  return (
    <aside className={styles.panel} aria-label="span">
      <div className={styles.panelHead}>
        <Status status={s.status} />
        <h3 className={styles.panelName}>{s.name ?? s.span_id}</h3>
      </div>
      <p className="mono small quiet">
        {s.kind ?? "span"} · {s.span_id}
        {s.orphan && " · its parent never arrived"}
      </p>
      {s.error && (
        <div className={styles.errorBox} role="note" aria-label="span error">
          <strong>{s.error.type}</strong>
          {s.error.message && <pre className={styles.errorText}>{s.error.message}</pre>}
        </div>
      )}
      <dl className="facts">
        <dt>Started</dt>
        <dd>{s.started_at ? formatTime(s.started_at) : "—"}</dd>
        <dt>Duration</dt>
        <dd>
          {formatDuration(s.duration_ms)}
          <span className="quiet"> (self {formatDuration(node.selfMs)})</span>
        </dd>
        {(s.provider || s.model) && (
          <>
            <dt>Model</dt>
            <dd>{[s.provider, s.model].filter(Boolean).join(" / ")}</dd>
          </>
        )}
        {s.attempt !== null && s.attempt > 1 && (
          <>
            <dt>Attempt</dt>
            <dd>{s.attempt}</dd>
          </>
        )}
        {link(s.retry_of, "Retry of")}
        {link(s.fallback_from, "Fallback from")}
        {retriedBy.length > 0 && (
          <>
            <dt>Retried by</dt>
            <dd>
              {retriedBy.map((n) => (
                <button
                  key={n.span.span_id}
                  type="button"
                  className={styles.inlineLink}
                  onClick={() => onSelect(n.span.span_id)}
                >
                  {n.span.name ?? n.span.span_id}
                </button>
              ))}
            </dd>
          </>
        )}
        {s.usage && (
          <>
            <dt>Tokens</dt>
            <dd>
              {formatCount(s.usage.input_tokens)} in, {formatCount(s.usage.output_tokens)} out
              {s.usage.cache_read_tokens > 0 && `, ${formatCount(s.usage.cache_read_tokens)} cached`}
              {s.usage.reasoning_tokens > 0 && `, ${formatCount(s.usage.reasoning_tokens)} reasoning`}
            </dd>
          </>
        )}
        {(s.cost_usd !== null || s.cost_source !== null) && (
          <>
            <dt>Cost</dt>
            <dd>
              {formatUsd(s.cost_usd)}
              {s.cost_source && (
                <div className="quiet small" aria-label="cost source">
                  {SOURCES[s.cost_source] ?? s.cost_source}
                  {s.reported_cost_usd !== null && s.computed_cost_usd !== null &&
                    ` (reported ${formatUsd(s.reported_cost_usd)}, computed ${formatUsd(s.computed_cost_usd)})`}
                </div>
              )}
              {s.rollup && <div className="quiet small">the sum of the calls inside it (counted once, there)</div>}
            </dd>
          </>
        )}
      </dl>
      {asked.map((a) => (
        <div key={a.id} className={styles.approval} aria-label="approval record">
          <h4>
            Approval: {a.action} <Status status={a.status} />
          </h4>
          <p className="small">
            Asked {formatTime(a.requested_at)}, needs {a.min_role}
            {a.decided_at &&
              `; ${a.status === "rejected" ? "rejected" : "decided"} ${formatTime(a.decided_at)}${a.decided_by ? ` by ${a.decided_by}` : ""}${a.decided_role ? ` (${a.decided_role})` : ""}`}
            {a.reason && ` — “${a.reason}”`}
            {a.completed_at && `; done ${formatTime(a.completed_at)}`}.{" "}
            <Link href={`/approvals/view/?id=${a.id}`}>The request</Link>
          </p>
        </div>
      ))}
      {payload.isPending && <p className="quiet" role="status">Loading the input and output…</p>}
      {payload.error && <p className="error">Could not load the input and output: {payload.error.message}</p>}
      {payload.data && (
        <>
          <h4>Input</h4>
          {payload.data.input === null ? <p className="quiet small">none</p> : <Json value={payload.data.input} label="span input" />}
          <h4>Output</h4>
          {payload.data.output === null ? <p className="quiet small">none</p> : <Json value={payload.data.output} label="span output" />}
          {Object.keys(payload.data.attributes).length > 0 && (
            <>
              <h4>Attributes</h4>
              <Json value={payload.data.attributes} label="span attributes" />
            </>
          )}
        </>
      )}
    </aside>
  );
}
