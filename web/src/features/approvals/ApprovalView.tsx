"use client";
/** One request, as webhook messages link to it: /approvals/view/?id=<32 hex>. */
import Link from "next/link";
import { useSearchParams } from "next/navigation";

import { ApiError } from "@/api/client";
import { useNow } from "@/lib/time";

import { ApprovalCard } from "./ApprovalCard";
import { useApproval } from "./queries";

export function ApprovalView() {
  const id = useSearchParams().get("id") ?? "";
  const one = useApproval(id);
  const now = useNow();
  const valid = /^[0-9a-f]{32}$/.test(id);

  return (
    <section>
      <p>
        <Link href="/approvals/">← All approvals</Link>
      </p>
      <h1>Approval request</h1>
      {!valid && <p className="error">This link names no request (an id is 32 hexadecimal digits).</p>}
      {valid && one.isPending && <p className="quiet" role="status">Loading…</p>}
      {one.error && (
        <p className="error" role="alert">
          {one.error instanceof ApiError && one.error.status === 404
            ? "No such request in this project."
            : `Could not load the request: ${one.error.message}`}
        </p>
      )}
      {one.data !== undefined && <ApprovalCard approval={one.data} now={now} linkTitle={false} />}
    </section>
  );
}
