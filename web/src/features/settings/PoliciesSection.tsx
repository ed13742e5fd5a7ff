"use client";
/**
 * Approval policies: per action, the least role that may decide its requests, four eyes (the
 * person who started the run may not approve it), when an undecided request expires, and which
 * webhooks are told. An action without a policy needs an approver, never expires and tells every
 * webhook.
 */
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useState, type FormEvent } from "react";

import { api, unwrap, type Role } from "@/api/client";
import { useNotify } from "@/components/Notices";
import { formatDuration } from "@/lib/format";

import { FormError, Loading, ReadOnlyNote, Section, useAdminOnly, useSettingsKey, useWebhooks } from "./common";
import styles from "./settings.module.css";

type Notify = "all" | "none" | "some";
const EMPTY = { action: "", minRole: "approver" as Role, fourEyes: false, expiresMinutes: "", notify: "all" as Notify, hooks: [] as number[] };

export function PoliciesSection() {
  const key = useSettingsKey("policies");
  const queries = useQueryClient();
  const notify = useNotify();
  const readOnly = useAdminOnly("set or remove approval policies");
  const policies = useQuery({
    queryKey: key,
    queryFn: async () => unwrap(await api.GET("/v1/approval-policies")).policies,
    refetchInterval: 30_000,
  });
  const hooks = useWebhooks();
  const active = (hooks.data ?? []).filter((h) => h.active);
  const [form, setForm] = useState(EMPTY);

  const put = useMutation({
    mutationFn: async () => {
      const minutes = form.expiresMinutes.trim();
      return unwrap(
        await api.PUT("/v1/approval-policies/{action}", {
          params: { path: { action: form.action.trim() } },
          body: {
            min_role: form.minRole,
            four_eyes: form.fourEyes,
            expires_after_seconds: minutes === "" ? null : Number(minutes) * 60,
            notify: form.notify === "all" ? null : form.notify === "none" ? [] : form.hooks,
          },
        }),
      );
    },
    onSuccess: (p) => {
      notify("done", `Requests for ${p.action} need ${p.min_role === "admin" ? "an admin" : "an approver"} from now on.`);
      setForm(EMPTY);
    },
    onSettled: () => queries.invalidateQueries({ queryKey: key }),
  });
  const remove = useMutation({
    mutationFn: async (action: string) =>
      unwrap(await api.DELETE("/v1/approval-policies/{action}", { params: { path: { action } } })),
    onSuccess: (_, action) => notify("done", `${action} is back to the defaults.`),
    onSettled: () => queries.invalidateQueries({ queryKey: key }),
  });
  const submit = (e: FormEvent) => {
    e.preventDefault();
    put.mutate();
  };
  const hookName = (id: number) => hooks.data?.find((h) => h.id === id)?.url ?? `#${id}`;

  return (
    <Section
      title="Approval policies"
      intro="Per action an agent asks approval for. An action without a policy needs an approver, has no four eyes, never expires and tells every webhook."
    >
      <ReadOnlyNote reason={readOnly} />
      {policies.data === undefined ? (
        <Loading error={policies.error} what="the policies" />
      ) : policies.data.length === 0 ? (
        <p className="empty">No policies: every action takes the defaults.</p>
      ) : (
        <div className={styles.scroll}>
          <table className={styles.table} aria-label="approval policies">
            <thead>
              <tr>
                <th>Action</th>
                <th>Decided by</th>
                <th>Four eyes</th>
                <th>Expires after</th>
                <th>Tells</th>
                <th />
              </tr>
            </thead>
            <tbody>
              {policies.data.map((p) => (
                <tr key={p.action}>
                  <td className="mono">{p.action}</td>
                  <td>{p.min_role === "admin" ? "an admin" : "an approver or admin"}</td>
                  <td>{p.four_eyes ? "yes" : "no"}</td>
                  <td>{p.expires_after_seconds === null ? "never" : formatDuration(p.expires_after_seconds * 1000)}</td>
                  <td className="small">
                    {p.notify === null ? "every webhook" : p.notify.length === 0 ? "no webhook" : p.notify.map(hookName).join(", ")}
                  </td>
                  <td>
                    <div className={styles.rowButtons}>
                      <button
                        type="button"
                        disabled={readOnly !== null}
                        title={readOnly ?? undefined}
                        onClick={() =>
                          setForm({
                            action: p.action,
                            minRole: p.min_role,
                            fourEyes: p.four_eyes,
                            expiresMinutes: p.expires_after_seconds === null ? "" : String(p.expires_after_seconds / 60),
                            notify: p.notify === null ? "all" : p.notify.length === 0 ? "none" : "some",
                            hooks: p.notify ?? [],
                          })
                        }
                      >
                        Change
                      </button>
                      <button
                        type="button"
                        className="danger"
                        disabled={readOnly !== null || remove.isPending}
                        title={readOnly ?? undefined}
                        onClick={() => {
                          if (window.confirm(`Remove the policy of ${p.action}? Its requests take the defaults.`)) {
                            remove.mutate(p.action);
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
      <form className={styles.form} onSubmit={submit} aria-label="set an approval policy">
        <label>
          Action
          <input
            value={form.action}
            onChange={(e) => setForm({ ...form, action: e.target.value })}
            placeholder="refund"
            required
            maxLength={256}
            disabled={readOnly !== null}
          />
        </label>
        <label>
          Decided by
          <select value={form.minRole} onChange={(e) => setForm({ ...form, minRole: e.target.value as Role })} disabled={readOnly !== null}>
            <option value="approver">an approver or admin</option>
            <option value="admin">an admin</option>
          </select>
        </label>
        <label className={styles.check}>
          <input
            type="checkbox"
            checked={form.fourEyes}
            onChange={(e) => setForm({ ...form, fourEyes: e.target.checked })}
            disabled={readOnly !== null}
          />{" "}
          Four eyes
        </label>
        <label>
          Expires after (minutes; empty: never)
          <input
            value={form.expiresMinutes}
            onChange={(e) => setForm({ ...form, expiresMinutes: e.target.value })}
            inputMode="decimal"
            disabled={readOnly !== null}
          />
        </label>
        <label>
          Tell
          <select value={form.notify} onChange={(e) => setForm({ ...form, notify: e.target.value as Notify })} disabled={readOnly !== null}>
            <option value="all">every webhook</option>
            <option value="none">no webhook</option>
            <option value="some">these webhooks:</option>
          </select>
        </label>
        {form.notify === "some" && (
          <fieldset disabled={readOnly !== null}>
            <legend>Webhooks</legend>
            {active.length === 0 && <span className="quiet">none active</span>}
            {active.map((h) => (
              <label key={h.id} className={styles.check}>
                <input
                  type="checkbox"
                  checked={form.hooks.includes(h.id)}
                  onChange={() =>
                    setForm({
                      ...form,
                      hooks: form.hooks.includes(h.id) ? form.hooks.filter((x) => x !== h.id) : [...form.hooks, h.id],
                    })
                  }
                />{" "}
                {h.url}
              </label>
            ))}
          </fieldset>
        )}
        <button type="submit" className="primary" disabled={readOnly !== null || put.isPending} title={readOnly ?? undefined}>
          Set policy
        </button>
      </form>
      <FormError error={put.error} />
    </Section>
  );
}
