"use client";
/**
 * The filter bar. Text fields apply on Enter or "Apply"; choices (status, has error, order, the
 * two checkboxes) at once. What is applied lives in the URL, never only here.
 */
import { useEffect, useState, type FormEvent } from "react";

import { RUN_STATUSES, fromLocalInput, toLocalInput, type FilterKey, type Filters } from "./filters";
import styles from "./runs.module.css";

interface Props {
  applied: Filters;
  onApply: (next: Filters) => void;
  agents: string[];
}

export function RunFilters({ applied, onApply, agents }: Props) {
  const [draft, setDraft] = useState<Filters>(applied);
  useEffect(() => setDraft(applied), [applied]);

  const set = (key: FilterKey, value: string) => setDraft((d) => ({ ...d, [key]: value }));
  const setNow = (key: FilterKey, value: string) => {
    const next = { ...draft, [key]: value };
    setDraft(next);
    onApply(next);
  };
  const submit = (e: FormEvent) => {
    e.preventDefault();
    onApply(draft);
  };
  const text = (key: FilterKey, label: string, placeholder = "", width = "8rem", list?: string) => (
    <label className={styles.field}>
      <span>{label}</span>
      <input
        name={key}
        value={draft[key] ?? ""}
        placeholder={placeholder}
        style={{ width }}
        list={list}
        onChange={(e) => set(key, e.target.value)}
      />
    </label>
  );
  const active = Object.values(applied).some((v) => v !== undefined && v !== "");

  return (
    <form className={styles.filters} onSubmit={submit} aria-label="run filters">
      {text("agent", "Agent", "any", "9rem", "runs-agents")}
      <datalist id="runs-agents">
        {agents.map((a) => (
          <option key={a} value={a} />
        ))}
      </datalist>
      <label className={styles.field}>
        <span>Status</span>
        <select name="status" value={draft.status ?? ""} onChange={(e) => setNow("status", e.target.value)}>
          <option value="">any</option>
          {RUN_STATUSES.map((s) => (
            <option key={s} value={s}>
              {s}
            </option>
          ))}
          <option value="failed,abandoned">failed or abandoned</option>
        </select>
      </label>
      {text("environment", "Environment", "any", "7rem")}
      {text("tag", "Tag", "any", "6rem")}
      <label className={styles.field}>
        <span>Started in the last</span>
        <select
          name="last"
          value=""
          onChange={(e) => {
            const hours = Number(e.target.value);
            if (hours > 0) onApply({ ...draft, since: new Date(Date.now() - hours * 3_600_000).toISOString().replace(/\.\d{3}Z$/, "Z"), until: "" });
          }}
        >
          <option value="">…</option>
          <option value="1">hour</option>
          <option value="24">24 hours</option>
          <option value="168">7 days</option>
          <option value="720">30 days</option>
        </select>
      </label>
      <label className={styles.field}>
        <span>Started from</span>
        <input
          type="datetime-local"
          name="since"
          value={toLocalInput(draft.since)}
          onChange={(e) => set("since", fromLocalInput(e.target.value))}
        />
      </label>
      <label className={styles.field}>
        <span>until</span>
        <input
          type="datetime-local"
          name="until"
          value={toLocalInput(draft.until)}
          onChange={(e) => set("until", fromLocalInput(e.target.value))}
        />
      </label>
      {text("min_cost_usd", "Min cost $", "0.10", "5rem")}
      <label className={styles.field}>
        <span>Errors</span>
        <select name="has_error" value={draft.has_error ?? ""} onChange={(e) => setNow("has_error", e.target.value)}>
          <option value="">any</option>
          <option value="true">with an error</option>
          <option value="false">without</option>
        </select>
      </label>
      {text("score_name", "Score", "name", "7rem")}
      {text("score_min", "min", "", "3.5rem")}
      {text("score_max", "max", "", "3.5rem")}
      <label className={styles.field}>
        <span>Order</span>
        <select name="order" value={draft.order ?? ""} onChange={(e) => setNow("order", e.target.value)}>
          <option value="">newest first</option>
          <option value="score_asc">score, worst first</option>
          <option value="score_desc">score, best first</option>
        </select>
      </label>
      <label className={styles.check}>
        <input
          type="checkbox"
          name="awaiting_approval"
          checked={draft.awaiting_approval === "true"}
          onChange={(e) => setNow("awaiting_approval", e.target.checked ? "true" : "")}
        />
        awaiting approval
      </label>
      <label className={styles.check}>
        <input
          type="checkbox"
          name="refused_by_cap"
          checked={draft.refused_by_cap === "true"}
          onChange={(e) => setNow("refused_by_cap", e.target.checked ? "true" : "")}
        />
        refused by the cap
      </label>
      <div className={styles.filterButtons}>
        <button type="submit" className="primary">
          Apply
        </button>
        {active && (
          <button type="button" onClick={() => onApply({})}>
            Clear
          </button>
        )}
      </div>
    </form>
  );
}
