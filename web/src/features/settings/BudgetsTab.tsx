"use client";
/**
 * Daily cost caps: the project's and each agent's, with today's spend against them (settled,
 * held by calls in flight, remaining). Setting a cap for a scope that has one changes it.
 */
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import Link from "next/link";
import { useState, type FormEvent } from "react";

import { api, unwrap } from "@/api/client";
import { useNotify } from "@/components/Notices";
import { Time } from "@/components/Time";
import { formatUsd } from "@/lib/format";
import { useNow } from "@/lib/time";

import { FormError, Loading, ReadOnlyNote, Section, useAdminOnly, useSettingsKey } from "./common";
import styles from "./settings.module.css";

const USD = /^\d{1,9}(\.\d*)?$|^\.\d+$/;

export function BudgetsTab() {
  const key = useSettingsKey("budgets");
  const queries = useQueryClient();
  const notify = useNotify();
  const now = useNow();
  const readOnly = useAdminOnly("set or remove caps");
  const budgets = useQuery({
    queryKey: key,
    queryFn: async () => unwrap(await api.GET("/v1/budgets")).budgets,
    refetchInterval: 5_000,
  });
  const [agent, setAgent] = useState("");
  const [cap, setCap] = useState("");

  const put = useMutation({
    mutationFn: async () =>
      unwrap(await api.PUT("/v1/budgets", { body: { cap_usd: cap.trim(), agent: agent.trim() || null } })),
    onSuccess: (b) => {
      notify("done", `${b.agent ? `The agent ${b.agent}'s` : "The project's"} daily cap is ${formatUsd(b.cap_usd)}.`);
      setCap("");
    },
    onSettled: () => queries.invalidateQueries({ queryKey: key }),
  });
  const remove = useMutation({
    mutationFn: async (who: string | null) =>
      unwrap(await api.DELETE("/v1/budgets", { params: { query: who ? { agent: who } : {} } })),
    onSuccess: (_, who) => notify("done", `${who ? `The agent ${who}'s` : "The project's"} cap is removed.`),
    onSettled: () => queries.invalidateQueries({ queryKey: key }),
  });

  const submit = (e: FormEvent) => {
    e.preventDefault();
    put.mutate();
  };
  const capLooksWrong = cap.trim() !== "" && !USD.test(cap.trim());

  return (
    <Section
      title="Daily cost caps"
      intro="A paid call is refused before it is made when today's settled spend plus what calls in flight hold would cross a cap that applies to it: the project's, and its agent's."
    >
      <ReadOnlyNote reason={readOnly} />
      {budgets.data === undefined ? (
        <Loading error={budgets.error} what="the caps" />
      ) : budgets.data.length === 0 ? (
        <p className="empty">No cap: nothing stops spending. Set the project&apos;s daily cap below.</p>
      ) : (
        <div className={styles.scroll}>
          <table className={styles.table} aria-label="caps">
            <thead>
              <tr>
                <th>Applies to</th>
                <th className={styles.num}>Daily cap</th>
                <th className={styles.num}>Settled today</th>
                <th className={styles.num}>Held now</th>
                <th className={styles.num}>Remaining</th>
                <th>Day</th>
                <th />
              </tr>
            </thead>
            <tbody>
              {budgets.data.map((b) => (
                <tr key={b.agent ?? ""} data-agent={b.agent ?? ""}>
                  <td>
                    {b.agent ? (
                      <>
                        agent <Link href={`/runs/?agent=${encodeURIComponent(b.agent)}`}>{b.agent}</Link>
                      </>
                    ) : (
                      <strong>the whole project</strong>
                    )}
                  </td>
                  <td className={styles.num}>{formatUsd(b.cap_usd)}</td>
                  <td className={styles.num} title={`of which seen only in traces: ${formatUsd(b.unguarded_usd)}`}>
                    {formatUsd(b.settled_usd)}
                  </td>
                  <td className={styles.num}>{formatUsd(b.held_usd)}</td>
                  <td className={styles.num}>{formatUsd(b.remaining_usd)}</td>
                  <td className="small">
                    {b.day} ({b.timezone}), resets <Time value={b.resets_at} now={now} />
                  </td>
                  <td>
                    <div className={styles.rowButtons}>
                      <button
                        type="button"
                        disabled={readOnly !== null}
                        title={readOnly ?? undefined}
                        onClick={() => {
                          setAgent(b.agent ?? "");
                          setCap(b.cap_usd);
                        }}
                      >
                        Change
                      </button>
                      <button
                        type="button"
                        className="danger"
                        disabled={readOnly !== null || remove.isPending}
                        title={readOnly ?? undefined}
                        onClick={() => {
                          const what = b.agent ? `the agent ${b.agent}'s cap` : "the project's cap";
                          if (window.confirm(`Remove ${what}? Its spending is no longer stopped by it.`)) {
                            remove.mutate(b.agent);
                          }
                        }}
                      >
                        Remove
                      </button>
                    </div>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      <FormError error={remove.error} />
      <form className={styles.form} onSubmit={submit} aria-label="set a cap">
        <label>
          Agent (empty: the whole project)
          <input value={agent} onChange={(e) => setAgent(e.target.value)} placeholder="support-bot" maxLength={256} disabled={readOnly !== null} />
        </label>
        <label>
          Daily cap (USD)
          <input
            value={cap}
            onChange={(e) => setCap(e.target.value)}
            inputMode="decimal"
            placeholder="25.00"
            required
            aria-invalid={capLooksWrong}
            disabled={readOnly !== null}
          />
        </label>
        <button type="submit" className="primary" disabled={readOnly !== null || put.isPending} title={readOnly ?? undefined}>
          Set cap
        </button>
      </form>
      {capLooksWrong && <p className="quiet small">A cap is a number of dollars, like 25 or 7.50.</p>}
      <FormError error={put.error} />
    </Section>
  );
}
