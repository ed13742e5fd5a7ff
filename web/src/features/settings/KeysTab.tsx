"use client";
/**
 * API keys: every key of the project (revoked ones too) by its label and first characters, when it
 * was made and last used; a new key is shown once, with a copy button; revoking asks first.
 */
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useState, type FormEvent } from "react";

import { api, unwrap } from "@/api/client";
import { useNotify } from "@/components/Notices";
import { Time } from "@/components/Time";
import { useNow } from "@/lib/time";

import { FormError, Loading, ReadOnlyNote, SecretOnce, Section, useAdminOnly, useSettingsKey } from "./common";
import styles from "./settings.module.css";

type Scope = "agent" | "admin";

/** How to use a new key: the lines for the agent's shell (as docs/sdk.md has them), for this server. */
function FirstRun({ secret }: { secret: string }) {
  const origin = typeof window === "undefined" ? "" : window.location.origin;
  return (
    <>
      <p className="small">
        In the shell where the agent runs (<code>pip install controlroom</code>, then <code>controlroom.init()</code>{" "}
        in the agent reads these), and to see its runs:
      </p>
      <pre className="json" aria-label="how to use the key">
        {`export CONTROLROOM_URL=${origin} CONTROLROOM_API_KEY=${secret}\n`}
        {`curl -s "$CONTROLROOM_URL/v1/runs?limit=5" -H "Authorization: Bearer $CONTROLROOM_API_KEY"`}
      </pre>
    </>
  );
}

export function KeysTab() {
  const key = useSettingsKey("keys");
  const queries = useQueryClient();
  const notify = useNotify();
  const now = useNow();
  const readOnly = useAdminOnly("create or revoke API keys");
  const keys = useQuery({
    queryKey: key,
    queryFn: async () => unwrap(await api.GET("/v1/keys")).keys,
    refetchInterval: 30_000,
  });
  const [name, setName] = useState("");
  const [scope, setScope] = useState<Scope>("agent");
  const [secret, setSecret] = useState<{ name: string; key: string } | null>(null);

  const create = useMutation({
    mutationFn: async () => unwrap(await api.POST("/v1/keys", { body: { name: name.trim(), scope } })),
    onSuccess: (made) => {
      setSecret({ name: made.name, key: made.key });
      setName("");
    },
    onSettled: () => queries.invalidateQueries({ queryKey: key }),
  });
  const revoke = useMutation({
    mutationFn: async ({ id }: { id: number; name: string }) =>
      unwrap(await api.DELETE("/v1/keys/{key_id}", { params: { path: { key_id: id } } })),
    onSuccess: (_, { name: revoked }) => notify("done", `The key “${revoked}” is revoked: it stops working at once.`),
    onSettled: () => queries.invalidateQueries({ queryKey: key }),
  });

  const submit = (e: FormEvent) => {
    e.preventDefault();
    create.mutate();
  };
  const ask = (id: number, label: string) => {
    if (window.confirm(`Revoke the key “${label}”? Whatever uses it stops working at once. This cannot be undone.`)) {
      revoke.mutate({ id, name: label });
    }
  };

  return (
    <Section
      title="API keys"
      intro="Agents send runs and ask for budget and approvals with an agent key; an admin key also manages the project (for automation). A key is shown once, when it is made."
    >
      <ReadOnlyNote reason={readOnly} />
      {keys.data === undefined ? (
        <Loading error={keys.error} what="the keys" />
      ) : keys.data.length === 0 ? (
        <p className="empty">No keys yet: create one below and give it to your agent.</p>
      ) : (
        <div className={styles.scroll}>
          <table className={styles.table} aria-label="API keys">
            <thead>
              <tr>
                <th>Name</th>
                <th>Key starts with</th>
                <th>Scope</th>
                <th>Created</th>
                <th>Last used</th>
                <th>State</th>
                <th />
              </tr>
            </thead>
            <tbody>
              {keys.data.map((k) => (
                <tr key={k.id} className={k.revoked_at ? styles.faded : undefined}>
                  <td>{k.name}</td>
                  <td className="mono">{k.prefix}…</td>
                  <td>{k.scope}</td>
                  <td>
                    <Time value={k.created_at} now={now} />
                  </td>
                  <td>{k.last_used_at ? <Time value={k.last_used_at} now={now} /> : <span className="quiet">never</span>}</td>
                  <td>{k.revoked_at ? <>revoked <Time value={k.revoked_at} now={now} /></> : "active"}</td>
                  <td>
                    {!k.revoked_at && (
                      <div className={styles.rowButtons}>
                      <button
                        type="button"
                        className="danger"
                        disabled={readOnly !== null || revoke.isPending}
                        title={readOnly ?? undefined}
                        onClick={() => ask(k.id, k.name)}
                      >
                        Revoke
                      </button>
                      </div>
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      <FormError error={revoke.error} />
      {secret !== null && (
        <SecretOnce label={`The new key “${secret.name}”`} value={secret.key} onDone={() => setSecret(null)}>
          <FirstRun secret={secret.key} />
        </SecretOnce>
      )}
      <form className={styles.form} onSubmit={submit} aria-label="create an API key">
        <label>
          Name
          <input
            value={name}
            onChange={(e) => setName(e.target.value)}
            placeholder="support-bot"
            required
            maxLength={128}
            disabled={readOnly !== null}
          />
        </label>
        <label>
          Scope
          <select value={scope} onChange={(e) => setScope(e.target.value as Scope)} disabled={readOnly !== null}>
            <option value="agent">agent</option>
            <option value="admin">admin</option>
          </select>
        </label>
        <button
          type="submit"
          className="primary"
          disabled={readOnly !== null || create.isPending}
          title={readOnly ?? undefined}
        >
          Create key
        </button>
      </form>
      <FormError error={create.error} />
    </Section>
  );
}
