"use client";
/**
 * Price overrides: this project's own prices for a model, which win over the built-in price list
 * (genai-prices, shipped with the server) for calls at or after their start. USD per million
 * tokens, as the API takes them.
 */
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useState, type FormEvent } from "react";

import { api, unwrap } from "@/api/client";
import { useNotify } from "@/components/Notices";
import { Time } from "@/components/Time";
import { formatCount } from "@/lib/format";
import { useNow } from "@/lib/time";

import { FormError, Loading, ReadOnlyNote, Section, useAdminOnly, useSettingsKey } from "./common";
import styles from "./settings.module.css";

const EMPTY = { model: "", provider: "", input: "", output: "", cacheRead: "", cacheWrite: "", from: "" };

/** "$3 / M" as USD per million tokens, exactly as the server keeps it (a decimal string). */
function perMillion(value: string | null): string {
  return value === null ? "—" : `$${value}`;
}

const SOURCES = { override: "this project's override", built_in: "built-in list", unknown: "no price known" } as const;

/** The models the project called lately with the price each is charged now, and from where. */
function ModelsInUse() {
  const models = useQuery({
    queryKey: useSettingsKey("prices", "models"),
    queryFn: async () => unwrap(await api.GET("/v1/prices/models", { params: { query: { days: 30 } } })).models,
    refetchInterval: 60_000,
  });
  return (
    <Section
      title="Models in use"
      intro="The models this project called in the last 30 days, most called first, with what a call to each is charged now (USD per million tokens; the highest tier where the price depends on the call)."
    >
      {models.data === undefined ? (
        <Loading error={models.error} what="the models in use" />
      ) : models.data.length === 0 ? (
        <p className="empty">No model calls in the last 30 days: the prices show here once agents call models.</p>
      ) : (
        <div className={styles.scroll}>
          <table className={styles.table} aria-label="models in use">
            <thead>
              <tr>
                <th>Model</th>
                <th>Provider</th>
                <th className={styles.num}>Calls</th>
                <th className={styles.num}>Input / M</th>
                <th className={styles.num}>Output / M</th>
                <th className={styles.num}>Cache read / M</th>
                <th>Price from</th>
                <th>Last called (day)</th>
              </tr>
            </thead>
            <tbody>
              {models.data.map((m) => (
                <tr key={`${m.provider ?? ""}/${m.model ?? ""}`}>
                  <td className="mono">{m.model ?? <span className="quiet">unnamed</span>}</td>
                  <td>{m.provider ?? <span className="quiet">—</span>}</td>
                  <td className={styles.num}>
                    {formatCount(m.calls)}
                    {m.unpriced_calls > 0 && <span className="error"> ({formatCount(m.unpriced_calls)} unpriced)</span>}
                  </td>
                  <td className={styles.num}>{perMillion(m.input_per_mtok)}</td>
                  <td className={styles.num}>{perMillion(m.output_per_mtok)}</td>
                  <td className={styles.num}>{perMillion(m.cache_read_per_mtok)}</td>
                  <td className={m.source === "unknown" ? "error" : undefined}>{SOURCES[m.source]}</td>
                  <td className="small">{m.last_day}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </Section>
  );
}

export function PricesTab() {
  return (
    <>
      <OverridesSection />
      <ModelsInUse />
    </>
  );
}

function OverridesSection() {
  const key = useSettingsKey("prices");
  const queries = useQueryClient();
  const notify = useNotify();
  const now = useNow();
  const readOnly = useAdminOnly("set prices");
  const prices = useQuery({
    queryKey: key,
    queryFn: async () => unwrap(await api.GET("/v1/prices")).prices,
    refetchInterval: 60_000,
  });
  const [form, setForm] = useState(EMPTY);
  const field = (name: keyof typeof EMPTY) => ({
    value: form[name],
    onChange: (e: { target: { value: string } }) => setForm({ ...form, [name]: e.target.value }),
    disabled: readOnly !== null,
  });

  const add = useMutation({
    mutationFn: async () => {
      const from = form.from.trim() === "" ? null : new Date(form.from).toISOString();
      return unwrap(
        await api.POST("/v1/prices", {
          body: {
            model: form.model.trim(),
            provider: form.provider.trim() || null,
            input_per_mtok: form.input.trim(),
            output_per_mtok: form.output.trim(),
            cache_read_per_mtok: form.cacheRead.trim() || null,
            cache_write_per_mtok: form.cacheWrite.trim() || null,
            effective_from: from,
          },
        }),
      );
    },
    onSuccess: (p) => {
      notify("done", `Calls to ${p.model} are priced at $${p.input_per_mtok} in / $${p.output_per_mtok} out per million tokens.`);
      setForm(EMPTY);
    },
    onSettled: () => queries.invalidateQueries({ queryKey: key }),
  });
  const submit = (e: FormEvent) => {
    e.preventDefault();
    add.mutate();
  };

  return (
    <Section
      title="Price overrides"
      intro={
        <>
          Calls are priced from the built-in price list (genai-prices, shipped with the server) unless the project
          sets its own price for the model here: for a negotiated rate, a fine-tuned or self-hosted model. Prices are
          USD per million tokens. Calls already counted keep their cost until <code>controlroom rebuild</code>.
        </>
      }
    >
      <ReadOnlyNote reason={readOnly} />
      {prices.data === undefined ? (
        <Loading error={prices.error} what="the prices" />
      ) : prices.data.length === 0 ? (
        <p className="empty">No overrides: every call is priced from the built-in list.</p>
      ) : (
        <div className={styles.scroll}>
          <table className={styles.table} aria-label="price overrides">
            <thead>
              <tr>
                <th>Model</th>
                <th>Provider</th>
                <th className={styles.num}>Input / M</th>
                <th className={styles.num}>Output / M</th>
                <th className={styles.num}>Cache read / M</th>
                <th className={styles.num}>Cache write / M</th>
                <th>From</th>
              </tr>
            </thead>
            <tbody>
              {prices.data.map((p) => (
                <tr key={p.id}>
                  <td className="mono">{p.model}</td>
                  <td>{p.provider ?? <span className="quiet">any</span>}</td>
                  <td className={styles.num}>{perMillion(p.input_per_mtok)}</td>
                  <td className={styles.num}>{perMillion(p.output_per_mtok)}</td>
                  <td className={styles.num}>{perMillion(p.cache_read_per_mtok)}</td>
                  <td className={styles.num}>{perMillion(p.cache_write_per_mtok)}</td>
                  <td>{p.effective_from ? <Time value={p.effective_from} now={now} /> : <span className="quiet">always</span>}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      <form className={styles.form} onSubmit={submit} aria-label="add a price override">
        <label>
          Model
          <input {...field("model")} placeholder="gpt-4o-mini" required maxLength={256} />
        </label>
        <label>
          Provider (optional)
          <input {...field("provider")} placeholder="openai" maxLength={256} />
        </label>
        <label>
          Input, USD / M tokens
          <input {...field("input")} inputMode="decimal" placeholder="0.15" required />
        </label>
        <label>
          Output, USD / M tokens
          <input {...field("output")} inputMode="decimal" placeholder="0.60" required />
        </label>
        <label>
          Cache read (optional)
          <input {...field("cacheRead")} inputMode="decimal" />
        </label>
        <label>
          Cache write (optional)
          <input {...field("cacheWrite")} inputMode="decimal" />
        </label>
        <label>
          From (optional, your time)
          <input {...field("from")} type="datetime-local" />
        </label>
        <button type="submit" className="primary" disabled={readOnly !== null || add.isPending} title={readOnly ?? undefined}>
          Add override
        </button>
      </form>
      <FormError error={add.error} />
    </Section>
  );
}
