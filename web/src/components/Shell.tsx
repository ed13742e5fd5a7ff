"use client";
/**
 * The frame of every page: the navigation (with the count of approvals waiting for a person,
 * polled, on every page), who is logged in and in which project, and the page. The login and
 * logout pages stand alone: they need no session.
 */
import Link from "next/link";
import { usePathname } from "next/navigation";
import { useEffect, useState, type ReactNode } from "react";

import { NoticeArea, NoticeProvider } from "@/components/Notices";
import { usePendingCount } from "@/features/approvals/queries";
import { RequireSession, useWho } from "@/lib/session";
import { viewerTimezone } from "@/lib/time";

const VIEWS = [
  { href: "/", label: "Overview" },
  { href: "/runs/", label: "Runs" },
  { href: "/approvals/", label: "Approvals" },
  { href: "/evals/", label: "Evals" },
  { href: "/costs/", label: "Costs" },
  { href: "/settings/", label: "Settings" },
] as const;

const STANDALONE = ["/login/", "/logout/"];

export function Shell({ children }: { children: ReactNode }) {
  const path = usePathname();
  if (STANDALONE.includes(path)) {
    return <main className="standalone">{children}</main>;
  }
  return (
    <RequireSession>
      <NoticeProvider>
        <div className="frame">
          <Nav path={path} />
          <main>
            <NoticeArea />
            {children}
          </main>
          <Footer />
        </div>
      </NoticeProvider>
    </RequireSession>
  );
}

function current(path: string, href: string): boolean {
  return href === "/" ? path === "/" : path.startsWith(href);
}

function Nav({ path }: { path: string }) {
  const who = useWho();
  const pending = usePendingCount();
  const count = pending.data;
  useEffect(() => {
    const base = document.title.replace(/^\(\d+\) /, "");
    document.title = count && count.count > 0 ? `(${count.count}) ${base}` : base;
  }, [count, path]);

  return (
    <nav className="nav" aria-label="main">
      <Link href="/" className="brand">
        controlroom
      </Link>
      <ul>
        {VIEWS.map((v) => (
          <li key={v.href}>
            <Link href={v.href} aria-current={current(path, v.href) ? "page" : undefined}>
              {v.label}
              {v.href === "/approvals/" && count !== undefined && (
                <span
                  className={`count${count.count > 0 ? " waiting" : ""}`}
                  aria-label={`${count.count} pending`}
                  data-testid="pending-count"
                >
                  {count.count}
                </span>
              )}
            </Link>
          </li>
        ))}
      </ul>
      <div className="who">
        {who.session.projects.length > 1 ? (
          <select
            aria-label="project"
            value={who.project}
            onChange={(event) => who.chooseProject(event.target.value)}
          >
            {who.session.projects.map((m) => (
              <option key={m.project} value={m.project}>
                {m.project} ({m.role})
              </option>
            ))}
          </select>
        ) : (
          <span className="quiet">{who.project}</span>
        )}
        <span data-testid="who">
          {who.session.login} <span className="quiet">({who.role})</span>
        </span>
        <Link href="/logout/">Log out</Link>
      </div>
    </nav>
  );
}

function Footer() {
  const [zone, setZone] = useState("");
  useEffect(() => setZone(viewerTimezone()), []);
  return <footer className="quiet small">Times are shown in your timezone{zone ? ` (${zone})` : ""}.</footer>;
}
