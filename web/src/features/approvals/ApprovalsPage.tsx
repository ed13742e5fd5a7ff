"use client";
/**
 * The approval queue: pending requests oldest first (the longest waiting on top), then what was
 * decided and what expired or was withdrawn, newest first. The tab is in the URL, so a link to it
 * works; the lists poll, so a new request or someone else's decision shows without a reload.
 */
import Link from "next/link";
import { useSearchParams } from "next/navigation";

import { useNow } from "@/lib/time";

import { ApprovalCard } from "./ApprovalCard";
import { LIST_LIMIT, TABS, useApprovals, type Tab } from "./queries";

function isTab(value: string | null): value is Tab {
  return value !== null && value in TABS;
}

export function ApprovalsPage() {
  const raw = useSearchParams().get("tab");
  const tab: Tab = isTab(raw) ? raw : "pending";
  const list = useApprovals(tab);
  const now = useNow();

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
      <div className="cards" aria-label={`${TABS[tab].label} requests`}>
        {list.data?.map((a) => <ApprovalCard key={a.id} approval={a} now={now} />)}
      </div>
    </section>
  );
}
