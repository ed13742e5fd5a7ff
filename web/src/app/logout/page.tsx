"use client";
/** Logging out ends the session on the server (DELETE /v1/session), not only in this tab. */
import { useQueryClient } from "@tanstack/react-query";
import Link from "next/link";
import { useEffect, useState } from "react";

import { ApiError, api, unwrap } from "@/api/client";

export default function LogoutPage() {
  const queries = useQueryClient();
  const [state, setState] = useState<"ending" | "ended" | string>("ending");

  useEffect(() => {
    let live = true;
    (async () => {
      try {
        unwrap(await api.DELETE("/v1/session"));
      } catch (e) {
        // 401: it had ended already, which is what was asked
        if (!(e instanceof ApiError && e.status === 401)) {
          if (live) setState(`The server did not end the session: ${e instanceof Error ? e.message : e}`);
          return;
        }
      }
      queries.clear();
      if (live) setState("ended");
    })();
    return () => {
      live = false;
    };
  }, [queries]);

  return (
    <section className="card login">
      <h1>controlroom</h1>
      {state === "ending" && <p role="status">Logging out…</p>}
      {state === "ended" && <p role="status">You are logged out.</p>}
      {state !== "ending" && state !== "ended" && (
        <p className="error" role="alert">
          {state}
        </p>
      )}
      <p>
        <Link href="/login/">Log in again</Link>
      </p>
    </section>
  );
}
