"use client";
/**
 * One approval request as a person decides it: who asks, for which run, the action and its full
 * arguments, the role it needs, how long it has waited and when it expires; approve, or reject with
 * a reason. The decision echoes the arguments hash of what is shown here, so arguments changed
 * meanwhile are never approved blind (the server answers 409). A 409 also means someone else
 * decided first: said plainly, with what they decided.
 */
import Link from "next/link";
import { useId, useState } from "react";

import type { Approval } from "@/api/client";
import { Json } from "@/components/Json";
import { Time } from "@/components/Time";
import { useWho } from "@/lib/session";

import { useDecide } from "./queries";
import { whyNot } from "./rules";

export function ApprovalCard({ approval: a, now, linkTitle = true }: { approval: Approval; now: number; linkTitle?: boolean }) {
  const title = `${a.action}`;
  return (
    <article
      className="card approval"
      aria-label={`${a.action} for ${a.agent || "an agent"}`}
      data-id={a.id}
      tabIndex={-1}
    >
      <header className="card-head">
        <h3>
          {linkTitle ? <Link href={`/approvals/view/?id=${a.id}`}>{title}</Link> : title}
        </h3>
        <span className={`badge status-${a.status}`}>{a.status}</span>
      </header>
      <div className="approval-body">
      <dl className="facts">
        <dt>Agent</dt>
        <dd>{a.agent || <span className="quiet">(not named)</span>}</dd>
        <dt>Run</dt>
        <dd>
          <Link className="mono" href={`/runs/view/?id=${a.run_id}`}>
            {a.run_id}
          </Link>
        </dd>
        <dt>Needs</dt>
        <dd>
          the {a.min_role} role{a.four_eyes ? " (four eyes: not the person who started the run)" : ""}
        </dd>
        {a.started_by !== null && (
          <>
            <dt>Started by</dt>
            <dd>{a.started_by}</dd>
          </>
        )}
        <dt>Asked</dt>
        <dd>
          <Time value={a.requested_at} now={now} />
        </dd>
        {a.status === "pending" && (
          <>
            <dt>Expires</dt>
            <dd>{a.expires_at === null ? "never" : <Time value={a.expires_at} now={now} />}</dd>
          </>
        )}
        {a.decided_at !== null && (
          <>
            <dt>{a.status === "expired" ? "Expired" : "Decided"}</dt>
            <dd>
              <Time value={a.decided_at} now={now} />
              {a.decided_by !== null && (
                <>
                  {" "}
                  by <strong>{a.decided_by}</strong> ({a.decided_role})
                </>
              )}
            </dd>
          </>
        )}
        {a.reason !== null && (
          <>
            <dt>Reason</dt>
            <dd>{a.reason}</dd>
          </>
        )}
        {a.claimed_at !== null && (
          <>
            <dt>Claimed</dt>
            <dd>
              <Time value={a.claimed_at} now={now} />
            </dd>
          </>
        )}
        {a.completed_at !== null && (
          <>
            <dt>{a.status === "failed" ? "Failed" : "Ran"}</dt>
            <dd>
              <Time value={a.completed_at} now={now} />
              {a.error !== null && <Json value={a.error} label="error" />}
            </dd>
          </>
        )}
      </dl>
      <div>
        <h4>Arguments</h4>
        <Json value={a.arguments} label="arguments" />
        <p className="quiet mono small hash">arguments hash {a.arguments_hash}</p>
      </div>
      </div>
      {a.status === "pending" && <Decide approval={a} now={now} />}
    </article>
  );
}

function Decide({ approval, now }: { approval: Approval; now: number }) {
  const who = useWho();
  const decide = useDecide();
  const [rejecting, setRejecting] = useState(false);
  const [reason, setReason] = useState("");
  const reasonId = useId();
  const refusal = whyNot(approval, who, now);
  const busy = decide.isPending;

  function send(decision: "approved" | "rejected", why?: string) {
    decide.mutate({ approval, decision, reason: why });
  }

  return (
    <section className="decide" aria-label="decision">
      {refusal !== null && (
        <p className="refusal" role="note">
          {refusal}
        </p>
      )}
      {!rejecting ? (
        <div className="buttons">
          <button
            type="button"
            className="primary"
            disabled={refusal !== null || busy}
            title={refusal ?? undefined}
            data-key="approve"
            onClick={() => send("approved")}
          >
            Approve
          </button>
          <button
            type="button"
            disabled={refusal !== null || busy}
            title={refusal ?? undefined}
            data-key="reject"
            onClick={() => setRejecting(true)}
          >
            Reject…
          </button>
        </div>
      ) : (
        <form
          className="reject"
          onSubmit={(event) => {
            event.preventDefault();
            send("rejected", reason.trim());
          }}
          onKeyDown={(event) => {
            if (event.key === "Escape") {
              event.stopPropagation();
              event.currentTarget.closest<HTMLElement>("article")?.focus(); // the keyboard goes on from the request
              setRejecting(false);
            } else if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && reason.trim() !== "") {
              event.preventDefault();
              send("rejected", reason.trim());
            }
          }}
        >
          <label htmlFor={reasonId}>
            Why reject it? (the agent and the run log keep the reason; Ctrl+Enter sends)
          </label>
          <textarea
            id={reasonId}
            value={reason}
            autoFocus
            required
            maxLength={2000}
            rows={3}
            onChange={(event) => setReason(event.target.value)}
          />
          <div className="buttons">
            <button type="submit" className="danger" disabled={busy || reason.trim() === ""}>
              Reject
            </button>
            <button type="button" disabled={busy} onClick={() => setRejecting(false)}>
              Cancel
            </button>
          </div>
        </form>
      )}
      {busy && (
        <p className="quiet" role="status">
          Sending…
        </p>
      )}
    </section>
  );
}
