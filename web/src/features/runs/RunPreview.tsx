"use client";
/** The selected run in short, beside the table: enough to decide whether to open it. */
import Link from "next/link";

import { Status } from "@/components/Status";
import { formatCount, formatDuration, formatUsd } from "@/lib/format";
import { formatTime, fromNow } from "@/lib/time";

import type { RunItem } from "./queries";
import { runHref, scoreText } from "./format";
import styles from "./runs.module.css";

export function RunPreview({ run, now, onClose }: { run: RunItem; now: number; onClose: () => void }) {
  const c = run.counts;
  return (
    <aside className={styles.preview} aria-label="run preview">
      <div className={styles.previewHead}>
        <Status status={run.status} />
        <strong>{run.agent ?? "(no agent)"}</strong>
        <button type="button" className="link" onClick={onClose} aria-label="close the preview" title="Esc">
          ×
        </button>
      </div>
      <p className="mono small quiet">{run.run_id}</p>
      {run.error && (
        <p className="error">
          <strong>{run.error.type}</strong>
          {run.error.message ? `: ${run.error.message}` : ""}
        </p>
      )}
      <dl className="facts">
        <dt>Started</dt>
        <dd>{run.started_at ? `${formatTime(run.started_at)} (${fromNow(run.started_at, now)})` : "—"}</dd>
        <dt>Duration</dt>
        <dd>{formatDuration(run.duration_ms)}</dd>
        <dt>Cost</dt>
        <dd>
          {formatUsd(run.cost_usd)}
          {run.unpriced_calls > 0 && <span className="quiet"> ({run.unpriced_calls} unpriced)</span>}
        </dd>
        <dt>Tokens</dt>
        <dd>
          {formatCount(run.usage.input_tokens)} in, {formatCount(run.usage.output_tokens)} out
        </dd>
        <dt>Spans</dt>
        <dd>
          {c.span} ({c.llm} LLM, {c.tool} tool{c.retry ? `, ${c.retry} retries` : ""}
          {c.fallback ? `, ${c.fallback} fallbacks` : ""}
          {c.error ? `, ${c.error} errors` : ""})
        </dd>
        {run.refused_calls > 0 && (
          <>
            <dt>Refused</dt>
            <dd>{run.refused_calls} call(s) refused by the cap</dd>
          </>
        )}
        {run.model && (
          <>
            <dt>Model</dt>
            <dd>{run.model}</dd>
          </>
        )}
        {(run.environment || run.agent_version) && (
          <>
            <dt>Version</dt>
            <dd>
              {[run.agent_version, run.environment].filter(Boolean).join(" · ")}
            </dd>
          </>
        )}
        {run.tags.length > 0 && (
          <>
            <dt>Tags</dt>
            <dd>{run.tags.join(", ")}</dd>
          </>
        )}
        {run.scores.length > 0 && (
          <>
            <dt>Scores</dt>
            <dd>
              {run.scores.map((s, i) => (
                <div key={i}>
                  {s.name}: {scoreText(s.value, s.label)} <span className="quiet small">({s.source})</span>
                </div>
              ))}
            </dd>
          </>
        )}
      </dl>
      <p>
        <Link className={styles.open} href={runHref(run.run_id, run.failing_span_id)}>
          Open the run →
        </Link>
      </p>
    </aside>
  );
}
