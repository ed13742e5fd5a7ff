"use client";
/**
 * Who is looking, in which project, with which role. The session is the server's (a cookie set by
 * POST /v1/session): the dashboard asks GET /v1/session and sends anyone without one to the login
 * page. A person in several projects picks one; the choice is kept in this browser.
 */
import { useQuery } from "@tanstack/react-query";
import { usePathname, useRouter } from "next/navigation";
import { createContext, useContext, useEffect, useMemo, useState, type ReactNode } from "react";

import { ApiError, api, setProject, unwrap, type Role, type Session } from "@/api/client";

const PROJECT_KEY = "controlroom.project";
const RANK: Record<Role, number> = { viewer: 0, approver: 1, admin: 2 };

export interface Who {
  session: Session;
  project: string;
  role: Role;
  chooseProject: (name: string) => void;
}

const WhoContext = createContext<Who | null>(null);

/** The logged-in person; only inside <RequireSession>. */
export function useWho(): Who {
  const who = useContext(WhoContext);
  if (who === null) {
    throw new Error("useWho outside <RequireSession>");
  }
  return who;
}

export function atLeast(role: Role, needed: Role): boolean {
  return RANK[role] >= RANK[needed];
}

export const sessionKey = ["session"] as const;

export function useSession() {
  return useQuery({
    queryKey: sessionKey,
    queryFn: async () => unwrap(await api.GET("/v1/session")),
    retry: (count, error) => !(error instanceof ApiError && error.status < 500) && count < 2,
    refetchInterval: 60_000,
  });
}

/** Renders its children for a logged-in person; sends anyone else to /login/?next=<here>. */
export function RequireSession({ children }: { children: ReactNode }) {
  const session = useSession();
  const router = useRouter();
  const path = usePathname();
  const [chosen, setChosen] = useState<string | null>(null);

  useEffect(() => {
    setChosen(window.localStorage.getItem(PROJECT_KEY));
  }, []);

  const ended = session.error instanceof ApiError && session.error.status === 401;
  useEffect(() => {
    if (ended) {
      const here = path + window.location.search;
      router.replace(`/login/?next=${encodeURIComponent(here)}`);
    }
  }, [ended, path, router]);

  const who = useMemo<Who | null>(() => {
    const data = session.data;
    if (data === undefined || data.projects.length === 0) {
      return null;
    }
    const membership = data.projects.find((m) => m.project === chosen) ?? data.projects[0]!;
    return {
      session: data,
      project: membership.project,
      role: membership.role,
      chooseProject: (name: string) => {
        window.localStorage.setItem(PROJECT_KEY, name);
        setChosen(name);
      },
    };
  }, [session.data, chosen]);

  // set while rendering, not in an effect: the pages below start their requests in their own
  // effects, which run before this component's
  setProject(who?.project ?? null);

  if (session.isPending || ended) {
    return <p className="quiet" role="status">Loading…</p>;
  }
  if (session.error) {
    return (
      <p className="error" role="alert">
        The server did not answer: {session.error.message}
      </p>
    );
  }
  if (who === null) {
    return <p className="error">You have no role in any project: ask an admin to add you to one.</p>;
  }
  return <WhoContext.Provider value={who}>{children}</WhoContext.Provider>;
}
