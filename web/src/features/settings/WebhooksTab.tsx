"use client";
/**
 * Webhooks (who hears of approval requests, signed with a secret shown once) with their recent
 * deliveries and a "send test" that shows what the receiver answered; then the approval policies:
 * per action, the least role that may decide, four eyes, expiry, and which webhooks are told.
 */
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useState, type FormEvent } from "react";

import { api, unwrap } from "@/api/client";
import type { components } from "@/api/schema";
import { useNotify } from "@/components/Notices";
import { Time } from "@/components/Time";
import { useNow } from "@/lib/time";

import { PoliciesSection } from "./PoliciesSection";
import { FormError, Loading, ReadOnlyNote, SecretOnce, Section, useAdminOnly, useSettingsKey, useWebhooks } from "./common";
import styles from "./settings.module.css";

type Webhook = components["schemas"]["WebhookOut"];
type TestResult = components["schemas"]["WebhookTestOut"];
type EventType = components["schemas"]["WebhookIn"]["event_types"] extends (infer E)[] | undefined ? E : never;

const EVENTS: EventType[] = [
  "approval.requested",
  "approval.decided",
  "approval.expired",
  "approval.cancelled",
  "approval.claimed",
  "approval.executed",
  "approval.failed",
];
const DEFAULT_EVENTS: EventType[] = ["approval.requested", "approval.decided", "approval.expired"];

export function WebhooksTab() {
  return (
    <>
      <WebhooksSection />
      <PoliciesSection />
    </>
  );
}

function WebhooksSection() {
  const key = useSettingsKey("webhooks");
  const queries = useQueryClient();
  const notify = useNotify();
  const now = useNow();
  const readOnly = useAdminOnly("add, test or remove webhooks");
  const hooks = useWebhooks();
  const [url, setUrl] = useState("");
  const [format, setFormat] = useState<"json" | "slack">("json");
  const [events, setEvents] = useState<EventType[]>(DEFAULT_EVENTS);
  const [secret, setSecret] = useState<{ url: string; secret: string } | null>(null);

  const add = useMutation({
    mutationFn: async () =>
      unwrap(await api.POST("/v1/webhooks", { body: { url: url.trim(), format, event_types: events } })),
    onSuccess: (made) => {
      setSecret({ url: made.url, secret: made.secret });
      setUrl("");
    },
    onSettled: () => queries.invalidateQueries({ queryKey: key }),
  });
  const submit = (e: FormEvent) => {
    e.preventDefault();
    add.mutate();
  };
  const toggle = (event: EventType) =>
    setEvents(events.includes(event) ? events.filter((x) => x !== event) : EVENTS.filter((x) => x === event || events.includes(x)));

  return (
    <Section
      title="Webhooks"
      intro="A webhook is told of approval requests (and what became of them) as they happen, signed with its secret so the receiver can check the message is from this server; a Slack one posts a message with a link to the request."
    >
      <ReadOnlyNote reason={readOnly} />
      {hooks.data === undefined ? (
        <Loading error={hooks.error} what="the webhooks" />
      ) : hooks.data.length === 0 ? (
        <p className="empty">No webhooks: approval requests wait here, in the dashboard, until someone looks.</p>
      ) : (
        <div className="cards" aria-label="webhooks">
          {hooks.data.map((h) => (
            <WebhookCard key={h.id} hook={h} now={now} readOnly={readOnly} onChanged={() => queries.invalidateQueries({ queryKey: key })} notify={notify} />
          ))}
        </div>
      )}
      {secret !== null && (
        <SecretOnce label={`The signing secret of ${secret.url}`} value={secret.secret} onDone={() => setSecret(null)} />
      )}
      <form className={styles.form} onSubmit={submit} aria-label="add a webhook">
        <label>
          URL
          <input
            value={url}
            onChange={(e) => setUrl(e.target.value)}
            placeholder="https://hooks.example.com/controlroom"
            required
            size={40}
            disabled={readOnly !== null}
          />
        </label>
        <label>
          Format
          <select value={format} onChange={(e) => setFormat(e.target.value as "json" | "slack")} disabled={readOnly !== null}>
            <option value="json">JSON</option>
            <option value="slack">Slack</option>
          </select>
        </label>
        <fieldset disabled={readOnly !== null}>
          <legend>Events</legend>
          {EVENTS.map((ev) => (
            <label key={ev} className={styles.check}>
              <input type="checkbox" checked={events.includes(ev)} onChange={() => toggle(ev)} /> {ev.replace("approval.", "")}
            </label>
          ))}
        </fieldset>
        <button type="submit" className="primary" disabled={readOnly !== null || add.isPending || events.length === 0} title={readOnly ?? undefined}>
          Add webhook
        </button>
      </form>
      <FormError error={add.error} />
    </Section>
  );
}

function WebhookCard({
  hook,
  now,
  readOnly,
  onChanged,
  notify,
}: {
  hook: Webhook;
  now: number;
  readOnly: string | null;
  onChanged: () => void;
  notify: (kind: "done" | "error", text: string) => void;
}) {
  const deliveriesKey = useSettingsKey("webhooks", hook.id, "deliveries");
  const queries = useQueryClient();
  const [shown, setShown] = useState(false);
  const [result, setResult] = useState<TestResult | null>(null);
  const deliveries = useQuery({
    queryKey: deliveriesKey,
    queryFn: async () =>
      unwrap(
        await api.GET("/v1/webhooks/{webhook_id}/deliveries", {
          params: { path: { webhook_id: hook.id }, query: { limit: 10 } },
        }),
      ).deliveries,
    enabled: shown,
    refetchInterval: 10_000,
  });
  const test = useMutation({
    mutationFn: async () =>
      unwrap(await api.POST("/v1/webhooks/{webhook_id}/test", { params: { path: { webhook_id: hook.id } } })),
    onMutate: () => setResult(null),
    onSuccess: (r) => setResult(r),
    onSettled: () => queries.invalidateQueries({ queryKey: deliveriesKey }),
  });
  const disable = useMutation({
    mutationFn: async () =>
      unwrap(await api.DELETE("/v1/webhooks/{webhook_id}", { params: { path: { webhook_id: hook.id } } })),
    onSuccess: () => notify("done", `The webhook ${hook.url} is disabled: it receives nothing more.`),
    onSettled: onChanged,
  });

  return (
    <article className="card" aria-label={`webhook ${hook.url}`}>
      <div className="card-head">
        <h3 className="mono" style={{ overflowWrap: "anywhere" }}>
          {hook.url}
        </h3>
        <span className="badge">{hook.active ? hook.format : "disabled"}</span>
      </div>
      <p className="small quiet">
        #{hook.id} · {hook.event_types.map((e) => e.replace("approval.", "")).join(", ")} · added{" "}
        <Time value={hook.created_at} now={now} />
        {hook.disabled_at && (
          <>
            {" "}
            · disabled <Time value={hook.disabled_at} now={now} />
          </>
        )}
      </p>
      <div className={styles.rowButtons}>
        {hook.active && (
          <>
            <button type="button" disabled={readOnly !== null || test.isPending} title={readOnly ?? undefined} onClick={() => test.mutate()}>
              {test.isPending ? "Sending…" : "Send test"}
            </button>
            <button
              type="button"
              className="danger"
              disabled={readOnly !== null || disable.isPending}
              title={readOnly ?? undefined}
              onClick={() => {
                if (window.confirm(`Disable the webhook ${hook.url}? It receives nothing more; its log stays.`)) {
                  disable.mutate();
                }
              }}
            >
              Disable
            </button>
          </>
        )}
        <button type="button" onClick={() => setShown(!shown)} aria-expanded={shown}>
          {shown ? "Hide deliveries" : "Recent deliveries"}
        </button>
      </div>
      {result !== null && (
        <p className={`${styles.result} ${result.delivered ? styles.ok : "error"}`} role="status" data-testid="test-result">
          {result.delivered
            ? `Test delivered: the receiver answered ${result.status}.`
            : `Test not delivered: ${result.status !== null ? `the receiver answered ${result.status}` : "the receiver could not be reached"}${result.error ? ` (${result.error})` : ""}.`}
        </p>
      )}
      <FormError error={test.error ?? disable.error} />
      {shown &&
        (deliveries.data === undefined ? (
          <Loading error={deliveries.error} what="the deliveries" />
        ) : deliveries.data.length === 0 ? (
          <p className="quiet small">Nothing sent yet.</p>
        ) : (
          <div className={styles.scroll}>
            <table className={styles.table} aria-label={`deliveries of webhook ${hook.id}`}>
              <thead>
                <tr>
                  <th>Event</th>
                  <th>State</th>
                  <th className={styles.num}>Attempts</th>
                  <th>Last answer</th>
                  <th>When</th>
                </tr>
              </thead>
              <tbody>
                {deliveries.data.map((d) => (
                  <tr key={d.id}>
                    <td>{d.event_type}</td>
                    <td>{d.state}</td>
                    <td className={styles.num}>{d.attempts}</td>
                    <td>{d.last_status ?? d.last_error ?? "—"}</td>
                    <td>
                      <Time value={d.delivered_at ?? d.created_at} now={now} />
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        ))}
    </article>
  );
}
