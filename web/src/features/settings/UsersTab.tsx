"use client";
/**
 * People and their roles in this project: add someone (they log in at once with the password
 * given), change a role, disable or remove. The server keeps an active admin in every project: a
 * change that would leave none is refused (409), and the page says so.
 */
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useState, type FormEvent } from "react";

import { ApiError, api, unwrap, type Role } from "@/api/client";
import { useNotify } from "@/components/Notices";
import { Time } from "@/components/Time";
import { useWho } from "@/lib/session";
import { useNow } from "@/lib/time";

import { FormError, Loading, ReadOnlyNote, Section, useAdminOnly, useSettingsKey } from "./common";
import styles from "./settings.module.css";

const ROLES: Role[] = ["viewer", "approver", "admin"];
const ROLE_HELP = "viewer: reads; approver: also decides approval requests; admin: also manages the project";
const MIN_PASSWORD = 12;

function aRole(role: Role): string {
  return role === "viewer" ? "a viewer" : `an ${role}`;
}

interface Change {
  login: string;
  role?: Role;
  disabled?: boolean;
}

/** A refusal that leaves the project without an admin, said plainly. */
function lastAdmin(error: Error | null): Error | null {
  if (error instanceof ApiError && error.status === 409) {
    return new Error(`Refused (409): ${error.message}. Make someone else an admin first.`);
  }
  return error;
}

export function UsersTab() {
  const key = useSettingsKey("users");
  const queries = useQueryClient();
  const notify = useNotify();
  const now = useNow();
  const me = useWho().session;
  const readOnly = useAdminOnly("add, change or remove people");
  const users = useQuery({
    queryKey: key,
    queryFn: async () => unwrap(await api.GET("/v1/users")).users,
    refetchInterval: 30_000,
  });
  const [login, setLogin] = useState("");
  const [name, setName] = useState("");
  const [password, setPassword] = useState("");
  const [role, setRole] = useState<Role>("viewer");

  const add = useMutation({
    mutationFn: async () =>
      unwrap(
        await api.POST("/v1/users", {
          body: { login: login.trim(), name: name.trim() || null, password, role },
        }),
      ),
    onSuccess: (user) => {
      notify("done", `${user.login} is ${aRole(user.role)} of this project and can log in now.`);
      setLogin("");
      setName("");
      setPassword("");
    },
    onSettled: () => queries.invalidateQueries({ queryKey: key }),
  });
  const change = useMutation({
    mutationFn: async ({ login: who, role: newRole, disabled }: Change) =>
      unwrap(
        await api.PATCH("/v1/users/{login}", {
          params: { path: { login: who } },
          body: { role: newRole ?? null, disabled: disabled ?? null },
        }),
      ),
    onSuccess: (user) =>
      notify("done", `${user.login} is ${user.disabled ? "disabled" : aRole(user.role)} now.`),
    onSettled: () => queries.invalidateQueries({ queryKey: key }),
  });
  const remove = useMutation({
    mutationFn: async (who: string) =>
      unwrap(await api.DELETE("/v1/users/{login}", { params: { path: { login: who } } })),
    onSuccess: (_, who) => notify("done", `${who} is out of this project.`),
    onSettled: () => queries.invalidateQueries({ queryKey: key }),
  });
  const busy = change.isPending || remove.isPending;
  const act = (then: () => void) => {
    change.reset(); // the refusal shown is the last action's only
    remove.reset();
    then();
  };

  const submit = (e: FormEvent) => {
    e.preventDefault();
    add.mutate();
  };

  return (
    <Section title="Users and roles" intro={ROLE_HELP}>
      <ReadOnlyNote reason={readOnly} />
      {users.data === undefined ? (
        <Loading error={users.error} what="the people" />
      ) : (
        <div className={styles.scroll}>
          <table className={styles.table} aria-label="users">
            <thead>
              <tr>
                <th>Login</th>
                <th>Name</th>
                <th>Role</th>
                <th>State</th>
                <th>Since</th>
                <th />
              </tr>
            </thead>
            <tbody>
              {users.data.map((u) => (
                <tr key={u.login} className={u.disabled ? styles.faded : undefined} data-login={u.login}>
                  <td>
                    {u.login}
                    {u.login === me.login && <span className="quiet"> (you)</span>}
                  </td>
                  <td>{u.name}</td>
                  <td>
                    <select
                      aria-label={`role of ${u.login}`}
                      value={u.role}
                      disabled={readOnly !== null || busy}
                      title={readOnly ?? undefined}
                      onChange={(e) => {
                        const newRole = e.target.value as Role;
                        act(() => change.mutate({ login: u.login, role: newRole }));
                      }}
                    >
                      {ROLES.map((r) => (
                        <option key={r} value={r}>
                          {r}
                        </option>
                      ))}
                    </select>
                  </td>
                  <td>{u.disabled ? "disabled" : "active"}</td>
                  <td>
                    <Time value={u.created_at} now={now} />
                  </td>
                  <td>
                    <div className={styles.rowButtons}>
                      <button
                        type="button"
                        disabled={readOnly !== null || busy}
                        title={readOnly ?? undefined}
                        onClick={() => act(() => change.mutate({ login: u.login, disabled: !u.disabled }))}
                      >
                        {u.disabled ? "Enable" : "Disable"}
                      </button>
                      <button
                        type="button"
                        className="danger"
                        disabled={readOnly !== null || busy}
                        title={readOnly ?? undefined}
                        onClick={() => {
                          if (window.confirm(`Take ${u.login} out of this project? Their sessions end at once.`)) {
                            act(() => remove.mutate(u.login));
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
      <FormError error={lastAdmin(change.error ?? remove.error)} />
      <form className={styles.form} onSubmit={submit} aria-label="add a user">
        <label>
          Login
          <input
            value={login}
            onChange={(e) => setLogin(e.target.value)}
            placeholder="ana@example.com"
            required
            maxLength={128}
            autoComplete="off"
            disabled={readOnly !== null}
          />
        </label>
        <label>
          Name (optional)
          <input value={name} onChange={(e) => setName(e.target.value)} maxLength={256} disabled={readOnly !== null} />
        </label>
        <label>
          Initial password ({MIN_PASSWORD}+ characters)
          <input
            type="password"
            value={password}
            onChange={(e) => setPassword(e.target.value)}
            required
            minLength={MIN_PASSWORD}
            autoComplete="new-password"
            disabled={readOnly !== null}
          />
        </label>
        <label>
          Role
          <select value={role} onChange={(e) => setRole(e.target.value as Role)} disabled={readOnly !== null}>
            {ROLES.map((r) => (
              <option key={r} value={r}>
                {r}
              </option>
            ))}
          </select>
        </label>
        <button type="submit" className="primary" disabled={readOnly !== null || add.isPending} title={readOnly ?? undefined}>
          Add user
        </button>
      </form>
      <FormError error={add.error} />
    </Section>
  );
}
