"use client";
/**
 * The approval queue: pending requests oldest first (the longest waiting on top), then what was
 * decided and what expired or was withdrawn, newest first. The tab is in the URL, so a link to it
 * works; the lists poll, so a new request or someone else's decision shows without a reload.
 *
 * The keyboard works the queue: j / k (or ↓ / ↑) move from request to request, a approves the one
 * in focus, r asks for the reason to reject it (Ctrl+Enter sends, Esc goes back), Enter opens it on
 * its own page. A decided request leaves the pending list; the focus stays at its place (the next).
 */
import Link from "next/link";
import { useRouter, useSearchParams } from "next/navigation";
import { useEffect, useRef } from "react";

import { useNow } from "@/lib/time";

import { ApprovalCard } from "./ApprovalCard";
import { LIST_LIMIT, TABS, useApprovals, type Tab } from "./queries";

function isTab(value: string | null): value is Tab {
  return value !== null && value in TABS;
}

function typing(target: EventTarget | null): boolean {
  return target instanceof HTMLElement && ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName);
}

function articlesIn(container: HTMLElement | null): HTMLElement[] {
  return Array.from(container?.querySelectorAll<HTMLElement>("article") ?? []);
}

/** Focus the request at ``index`` (clamped; the remembered one without), and remember it. */
function focusCard(container: HTMLElement | null, at: { current: number | null }, index?: number) {
  const all = articlesIn(container);
  const i = Math.max(0, Math.min(index ?? at.current ?? 0, all.length - 1));
  const el = all[i];
  if (el === undefined) return;
  at.current = i;
  el.focus();
  el.scrollIntoView({ block: "nearest" });
}

export function ApprovalsPage() {
  const raw = useSearchParams().get("tab");
  const tab: Tab = isTab(raw) ? raw : "pending";
  const list = useApprovals(tab);
  const now = useNow();
  const router = useRouter();
  const cards = useRef<HTMLDivElement>(null);
  const at = useRef<number | null>(null); // the index of the request in focus, if the keyboard moved

  // a decided request leaves the list: keep the focus where it was (now the next request)
  useEffect(() => {
    if (at.current !== null && !cards.current?.contains(document.activeElement)) focusCard(cards.current, at);
  }, [list.data]);

  useEffect(() => {
    function onKey(event: KeyboardEvent) {
      if (typing(event.target) || event.altKey || event.ctrlKey || event.metaKey) return;
      const all = articlesIn(cards.current);
      const current = all.findIndex((el) => el.contains(document.activeElement));
      const card = all[current];
      const click = (key: string) =>
        card?.querySelector<HTMLButtonElement>(`button[data-key='${key}']:not(:disabled)`)?.click();
      switch (event.key) {
        case "j":
        case "ArrowDown":
          focusCard(cards.current, at, current + 1);
          break;
        case "k":
        case "ArrowUp":
          focusCard(cards.current, at, current <= 0 ? 0 : current - 1);
          break;
        case "a":
          click("approve");
          break;
        case "r":
          click("reject");
          break;
        case "Enter":
          if (card === undefined || event.target !== card) return;
          router.push(`/approvals/view/?id=${card.dataset.id}`);
          break;
        default:
          return;
      }
      event.preventDefault();
    }
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  }, [router]);

  return (
    <section>
      <h1>Approvals</h1>
      <nav className="tabs" aria-label="approval status">
        {(Object.keys(TABS) as Tab[]).map((t) => (
          <Link key={t} href={`/approvals/?tab=${t}`} aria-current={t === tab ? "page" : undefined}>
            {TABS[t].label}
          </Link>
        ))}
      </nav>
      {list.isPending && <p className="quiet" role="status">Loading…</p>}
      {list.error && (
        <p className="error" role="alert">
          Could not load the requests: {list.error.message}
        </p>
      )}
      {list.data !== undefined && list.data.length === 0 && (
        <p className="empty">{tab === "pending" ? "Nothing is waiting for a person." : "None."}</p>
      )}
      {list.data !== undefined && list.data.length >= LIST_LIMIT && (
        <p className="quiet">The {LIST_LIMIT} {tab === "pending" ? "oldest" : "latest"} are shown.</p>
      )}
      {list.data !== undefined && list.data.length > 0 && (
        <p className="quiet small">
          Keys: j / k (or ↓ / ↑) move, a approves, r rejects with a reason (Ctrl+Enter sends, Esc goes back), Enter
          opens the request.
        </p>
      )}
      <div className="cards" aria-label={`${TABS[tab].label} requests`} ref={cards}>
        {list.data?.map((a) => <ApprovalCard key={a.id} approval={a} now={now} />)}
      </div>
    </section>
  );
}
