"use client";
/**
 * How eval regressions are looked for: which windows are compared, the least drop flagged, the
 * false discovery rate, the scores needed on each side. Edited as text and saved together; the
 * server checks every field (its refusal is shown under the form).
 */
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import Link from "next/link";
import { useEffect, useState, type FormEvent } from "react";

import { api, unwrap } from "@/api/client";
import type { components } from "@/api/schema";
import { useNotify } from "@/components/Notices";

import { FormError, Loading, ReadOnlyNote, Section, useAdminOnly, useSettingsKey } from "./common";
import styles from "./settings.module.css";

type EvalSettings = components["schemas"]["EvalSettingsOut"];
type Numeric = Exclude<keyof EvalSettings, "compare">;

const FIELDS: { name: Numeric; label: string; help: string; step: string }[] = [
  { name: "margin", label: "Margin", help: "The least drop in mean score (0 to 1 scale) flagged as a regression", step: "0.01" },
  { name: "recent_days", label: "Recent window (days)", help: "The scores of this window are compared…", step: "0.5" },
  { name: "baseline_days", label: "Baseline window (days)", help: "…with those of the days before it", step: "0.5" },
  { name: "q", label: "False discovery rate (q)", help: "Benjamini-Hochberg, over every agent and evaluator tested", step: "0.01" },
  { name: "min_scores", label: "Scores needed", help: "On each side, before anything is flagged", step: "1" },
];

type Draft = Record<Numeric, string> & { compare: EvalSettings["compare"] };

function draftOf(s: EvalSettings): Draft {
  return {
    margin: String(s.margin),
    recent_days: String(s.recent_days),
    baseline_days: String(s.baseline_days),
    q: String(s.q),
    min_scores: String(s.min_scores),
    compare: s.compare,
  };
}

export function EvalsTab() {
  const key = useSettingsKey("eval-settings");
  const queries = useQueryClient();
  const notify = useNotify();
  const readOnly = useAdminOnly("change the eval thresholds");
  const saved = useQuery({
    queryKey: key,
    queryFn: async () => unwrap(await api.GET("/v1/evals/settings")),
  });
  const [draft, setDraft] = useState<Draft | null>(null);
  useEffect(() => {
    if (saved.data !== undefined && draft === null) {
      setDraft(draftOf(saved.data));
    }
  }, [saved.data, draft]);

  const save = useMutation({
    mutationFn: async (d: Draft) =>
      unwrap(
        await api.PUT("/v1/evals/settings", {
          body: {
            margin: Number(d.margin),
            recent_days: Number(d.recent_days),
            baseline_days: Number(d.baseline_days),
            q: Number(d.q),
            min_scores: Number(d.min_scores),
            compare: d.compare,
          },
        }),
      ),
    onSuccess: (s) => {
      queries.setQueryData(key, s);
      setDraft(draftOf(s));
      notify("done", "The eval thresholds are saved: the next check uses them.");
    },
  });
  const submit = (e: FormEvent) => {
    e.preventDefault();
    if (draft !== null) {
      save.mutate(draft);
    }
  };
  const changed = draft !== null && saved.data !== undefined && JSON.stringify(draft) !== JSON.stringify(draftOf(saved.data));

  return (
    <Section
      title="Eval regression thresholds"
      intro={
        <>
          How the <Link href="/evals/">evals</Link> view finds a regression: an agent&apos;s scores by one evaluator
          dropping by at least the margin, significant after correcting for how many were tested.
        </>
      }
    >
      <ReadOnlyNote reason={readOnly} />
      {draft === null ? (
        <Loading error={saved.error} what="the eval thresholds" />
      ) : (
        <form className={styles.form} onSubmit={submit} aria-label="eval thresholds">
          <div className={styles.fields}>
            <label>
              Compare
              <select
                value={draft.compare}
                onChange={(e) => setDraft({ ...draft, compare: e.target.value as Draft["compare"] })}
                disabled={readOnly !== null}
              >
                <option value="window">the recent window against the baseline before it</option>
                <option value="agent_version">each agent&apos;s latest version against the one before</option>
              </select>
            </label>
            {FIELDS.map((f) => (
              <label key={f.name}>
                {f.label}
                <input
                  name={f.name}
                  type="number"
                  step={f.step}
                  value={draft[f.name]}
                  onChange={(e) => setDraft({ ...draft, [f.name]: e.target.value })}
                  required
                  disabled={readOnly !== null}
                />
                <small>{f.help}</small>
              </label>
            ))}
          </div>
          <div className={styles.rowButtons}>
            <button type="submit" className="primary" disabled={readOnly !== null || save.isPending || !changed} title={readOnly ?? undefined}>
              Save thresholds
            </button>
            <button
              type="button"
              disabled={readOnly !== null || !changed}
              onClick={() => saved.data && setDraft(draftOf(saved.data))}
            >
              Undo changes
            </button>
          </div>
        </form>
      )}
      <FormError error={save.error} />
    </Section>
  );
}
