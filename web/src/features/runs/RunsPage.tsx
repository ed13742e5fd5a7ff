"use client";
/**
 * The runs list: every filter of GET /v1/runs in the URL, one keyset page at a time (previous /
 * next through next_cursor), the first page refreshed every few seconds, and a preview of the
 * selected run beside the table. Keys: j / ↓ next run, k / ↑ previous, Enter opens it, Esc closes
 * the preview.
 */
import Link from "next/link";
import { useRouter, useSearchParams } from "next/navigation";
import { useCallback, useEffect, useMemo, useRef, useState } from "react";

import { Status } from "@/components/Status";
import { formatCount, formatDuration, formatUsd } from "@/lib/format";
import { formatTime, fromNow, useNow } from "@/lib/time";

import { filterQuery, readFilters, type Filters } from "./filters";
import { runHref, scoreText, tokens } from "./format";
import { FirstRun } from "./FirstRun";
import { useAnyRun, useRunsPage, type RunItem } from "./queries";
import { RunFilters } from "./RunFilters";
import { RunPreview } from "./RunPreview";
import styles from "./runs.module.css";

function typing(target: EventTarget | null): boolean {
  return (
    target instanceof HTMLElement &&
    (target.isContentEditable || ["INPUT", "SELECT", "TEXTAREA", "BUTTON"].includes(target.tagName))
  );
}

export function RunsPage() {
  const params = useSearchParams();
  const router = useRouter();
  const query = params.toString();
  const filters = useMemo(() => readFilters(new URLSearchParams(query)), [query]);
  const [cursors, setCursors] = useState<string[]>([]); // the cursors of the pages before this one
  const [cursor, setCursor] = useState<string | null>(null);
  const [selected, setSelected] = useState<string | null>(null);
  const now = useNow();

  useEffect(() => {
    // another filter: back to its first page
    setCursors([]);
    setCursor(null);
  }, [query]);

  const page = useRunsPage(filters, cursor);
  const rows = page.data?.runs ?? [];
  const filtered = Object.keys(filters).length > 0;
  const any = useAnyRun(!filtered && page.data !== undefined && rows.length === 0 && cursor === null);
  const selectedRun = rows.find((r) => r.run_id === selected) ?? null;
  const agents = useMemo(
    () => [...new Set(rows.map((r) => r.agent).filter((a): a is string => !!a))].sort(),
    [rows],
  );

  const apply = useCallback((next: Filters) => router.push(`/runs/${filterQuery(next)}`), [router]);

  const rowsRef = useRef(rows);
  rowsRef.current = rows;
  const tableRef = useRef<HTMLTableSectionElement>(null);

  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      if (e.altKey || e.ctrlKey || e.metaKey || typing(e.target)) return;
      const list = rowsRef.current;
      const at = list.findIndex((r) => r.run_id === selected);
      let next: RunItem | undefined;
      if (e.key === "j" || e.key === "ArrowDown") next = list[at < 0 ? 0 : Math.min(at + 1, list.length - 1)];
      else if (e.key === "k" || e.key === "ArrowUp") next = list[at < 0 ? 0 : Math.max(at - 1, 0)];
      else if (e.key === "Enter" && at >= 0 && list[at]) {
        e.preventDefault();
        router.push(runHref(list[at].run_id));
        return;
      } else if (e.key === "Escape" && selected !== null) {
        setSelected(null);
        return;
      } else return;
      if (next) {
        e.preventDefault();
        setSelected(next.run_id);
        tableRef.current
          ?.querySelector(`[data-run="${next.run_id}"]`)
          ?.scrollIntoView({ block: "nearest" });
      }
    };
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  }, [selected, router]);

  const next = () => {
    const c = page.data?.next_cursor;
    if (!c) return;
    setCursors((cs) => [...cs, cursor ?? ""]);
    setCursor(c);
  };
  const previous = () => {
    const prev = cursors[cursors.length - 1];
    setCursors((cs) => cs.slice(0, -1));
    setCursor(prev ? prev : null);
  };

  return (
    <section className={styles.page}>
      <h1>Runs</h1>
      <RunFilters applied={filters} onApply={apply} agents={agents} />
      {page.error && (
        <p className="error" role="alert">
          Could not load the runs: {page.error.message}
        </p>
      )}
      {page.isPending && (
        <p className="quiet" role="status">
          Loading…
        </p>
      )}
      {page.data !== undefined && rows.length === 0 && cursor === null && (
        filtered ? (
          <div className="empty">
            No runs match these filters. <Link href="/runs/">Show all runs</Link>
          </div>
        ) : any.data === false ? (
          <FirstRun />
        ) : null
      )}
      {rows.length > 0 && (
        <div className={`${styles.split} ${selectedRun ? styles.withPreview : ""}`}>
          <div className={styles.tableBox}>
            <table className={styles.table} aria-label="runs">
              <thead>
                <tr>
                  <th>Status</th>
                  <th>Agent</th>
                  <th>Started</th>
                  <th className={styles.num}>Duration</th>
                  <th className={styles.num}>Tokens</th>
                  <th className={styles.num}>Cost</th>
                  <th>Scores</th>
                </tr>
              </thead>
              <tbody ref={tableRef}>
                {rows.map((r) => (
                  <tr
                    key={r.run_id}
                    data-run={r.run_id}
                    aria-selected={r.run_id === selected}
                    className={r.run_id === selected ? styles.selected : undefined}
                    onClick={() => setSelected(r.run_id)}
                    onDoubleClick={() => router.push(runHref(r.run_id))}
                  >
                    <td>
                      <Status status={r.status} />
                      {r.refused_calls > 0 && (
                        <span className={styles.flag} title={`${r.refused_calls} call(s) refused by the cap`}>
                          cap
                        </span>
                      )}
                    </td>
                    <td className={styles.agent}>
                      <Link href={runHref(r.run_id)} onClick={(e) => e.stopPropagation()}>
                        {r.agent ?? "(no agent)"}
                      </Link>
                      {r.error && <div className={styles.errorLine}>{r.error.type}</div>}
                    </td>
                    <td title={r.started_at ?? ""}>
                      {r.started_at ? (
                        <>
                          {formatTime(r.started_at)}
                          <div className="quiet small">{fromNow(r.started_at, now)}</div>
                        </>
                      ) : (
                        "—"
                      )}
                    </td>
                    <td className={styles.num}>{formatDuration(r.duration_ms)}</td>
                    <td className={styles.num}>{formatCount(tokens(r), true)}</td>
                    <td className={styles.num}>{formatUsd(r.cost_usd)}</td>
                    <td>
                      <div className={styles.scores}>
                      {r.scores.slice(0, 3).map((s, i) => (
                        <span key={i} className={styles.score} title={`${s.name} (${s.source})`}>
                          {s.name} {scoreText(s.value, s.label)}
                        </span>
                      ))}
                      {r.scores.length > 3 && <span className="quiet small">+{r.scores.length - 3}</span>}
                      </div>
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
            <div className={styles.pager}>
              <button type="button" onClick={previous} disabled={cursor === null}>
                ← Newer
              </button>
              <span className="quiet small">
                {cursor === null ? "Newest runs, refreshed every few seconds" : `Page ${cursors.length + 1}`}
                {page.isFetching && " · loading…"}
              </span>
              <button type="button" onClick={next} disabled={!page.data?.next_cursor}>
                Older →
              </button>
            </div>
            <p className="quiet small">Keys: j / k (or ↓ / ↑) move, Enter opens the run, Esc closes the preview.</p>
          </div>
          {selectedRun && <RunPreview run={selectedRun} now={now} onClose={() => setSelected(null)} />}
        </div>
      )}
    </section>
  );
}
