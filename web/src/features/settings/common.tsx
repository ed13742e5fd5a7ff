"use client";
/**
 * What every settings tab shares: who may change things (an admin; the server refuses anyone
 * else anyway), the server's refusals shown next to the form that caused them, a secret shown
 * once with a copy button, and the query keys (per project) the tabs refresh.
 */
import { useState, type ReactNode } from "react";

import { useQuery } from "@tanstack/react-query";

import { ApiError, api, unwrap } from "@/api/client";
import { atLeast, useWho } from "@/lib/session";

import styles from "./settings.module.css";

/** null when the viewer may change settings, else why not ("Only an admin can …"). */
export function useAdminOnly(what: string): string | null {
  const { role } = useWho();
  return atLeast(role, "admin") ? null : `Only an admin can ${what}; your role here is ${role}.`;
}

export function useSettingsKey(...parts: (string | number)[]): (string | number)[] {
  const { project } = useWho();
  return ["settings", project, ...parts];
}

/** Why the controls below are disabled, said once above them. */
export function ReadOnlyNote({ reason }: { reason: string | null }) {
  if (reason === null) {
    return null;
  }
  return (
    <p className="refusal" role="note">
      {reason}
    </p>
  );
}

/** A refusal from the server (its problem document, whose detail names each field at fault). */
export function problemText(error: Error): string {
  return error instanceof ApiError ? `${error.status} ${error.code}: ${error.message}` : error.message;
}

/** The error of the form just above it, or nothing. */
export function FormError({ error }: { error: Error | null }) {
  if (error === null) {
    return null;
  }
  return (
    <p className={`error ${styles.formError}`} role="alert">
      {problemText(error)}
    </p>
  );
}

/** A secret the server shows once: the value, a copy button, and the warning. */
export function SecretOnce({
  label,
  value,
  onDone,
  children,
}: {
  label: string;
  value: string;
  onDone: () => void;
  children?: ReactNode;
}) {
  const [copied, setCopied] = useState(false);
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(value);
      setCopied(true);
    } catch {
      // no clipboard (an insecure origin): the value stays selectable
      setCopied(false);
    }
  };
  return (
    <div className={styles.secret} role="region" aria-label={label}>
      <p>
        <strong>{label}</strong>: copy it now. It will not be shown again.
      </p>
      <div className={styles.secretRow}>
        <code className={styles.secretValue} data-testid="secret">
          {value}
        </code>
        <button type="button" onClick={copy}>
          {copied ? "Copied" : "Copy"}
        </button>
        <button type="button" onClick={onDone}>
          I have stored it
        </button>
      </div>
      {children}
    </div>
  );
}

export function Section({ title, children, intro }: { title: string; intro?: ReactNode; children: ReactNode }) {
  return (
    <section className={styles.section} aria-label={title}>
      <h2 className={styles.h2}>{title}</h2>
      {intro !== undefined && <p className="quiet small">{intro}</p>}
      {children}
    </section>
  );
}

export function Loading({ error, what }: { error: Error | null; what: string }) {
  return error ? (
    <p className="error" role="alert">
      Could not load {what}: {problemText(error)}
    </p>
  ) : (
    <p className="quiet" role="status">
      Loading…
    </p>
  );
}

/** The project's webhooks (the webhooks tab lists them; a policy's notify picks among them). */
export function useWebhooks() {
  return useQuery({
    queryKey: useSettingsKey("webhooks"),
    queryFn: async () => unwrap(await api.GET("/v1/webhooks")).webhooks,
    refetchInterval: 30_000,
  });
}
