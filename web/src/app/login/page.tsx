"use client";
/**
 * Logging in: POST /v1/session sets the session cookie (HttpOnly: this page never sees it). Then
 * back to the page that sent the person here, if it is one of ours.
 */
import { useQueryClient } from "@tanstack/react-query";
import { useRouter, useSearchParams } from "next/navigation";
import { Suspense, useState, type FormEvent } from "react";

import { ApiError, api, unwrap } from "@/api/client";
import { sessionKey } from "@/lib/session";

/** Only a path of this site: never an open redirect to somewhere else. */
function safeNext(raw: string | null): string {
  return raw !== null && raw.startsWith("/") && !raw.startsWith("//") ? raw : "/";
}

function LoginForm() {
  const router = useRouter();
  const next = safeNext(useSearchParams().get("next"));
  const queries = useQueryClient();
  const [login, setLogin] = useState("");
  const [password, setPassword] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  async function submit(event: FormEvent) {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const session = unwrap(await api.POST("/v1/session", { body: { login, password } }));
      queries.clear(); // nothing of an earlier person's stays in the cache
      queries.setQueryData(sessionKey, session);
      router.replace(next);
    } catch (e) {
      setError(message(e));
      setBusy(false);
    }
  }

  return (
    <form className="card login" onSubmit={submit} aria-label="log in">
      <h1>controlroom</h1>
      <label>
        Login
        <input
          name="login"
          autoComplete="username"
          required
          autoFocus
          value={login}
          onChange={(e) => setLogin(e.target.value)}
        />
      </label>
      <label>
        Password
        <input
          name="password"
          type="password"
          autoComplete="current-password"
          required
          value={password}
          onChange={(e) => setPassword(e.target.value)}
        />
      </label>
      <button type="submit" className="primary" disabled={busy}>
        {busy ? "Logging in…" : "Log in"}
      </button>
      {error !== null && (
        <p className="error" role="alert">
          {error}
        </p>
      )}
    </form>
  );
}

function message(e: unknown): string {
  if (e instanceof ApiError) {
    if (e.status === 401) return "Wrong login or password.";
    if (e.status === 429) {
      const wait = e.problem.retry_after;
      return `Too many failed logins: try again ${typeof wait === "number" ? `in ${Math.ceil(wait)} s` : "later"}.`;
    }
    return e.message;
  }
  return "The server did not answer.";
}

export default function LoginPage() {
  return (
    <Suspense>
      <LoginForm />
    </Suspense>
  );
}
