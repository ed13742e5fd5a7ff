"use client";
/**
 * Who is waiting on a person: how many requests, the oldest one's age, those about to expire, and
 * the oldest few with approve / reject inline (the approvals feature's decision and its rules: what
 * the viewer's role cannot do is disabled, with the reason).
 */
import Link from "next/link";
import { useState } from "react";

import type { Approval } from "@/api/client";
import { Time } from "@/components/Time";
import { useDecide } from "@/features/approvals/queries";
import { whyNot } from "@/features/approvals/rules";
import { formatCount } from "@/lib/format";
import { useWho } from "@/lib/session";
import { fromNow } from "@/lib/time";

import s from "./overview.module.css";
import type { ApprovalsCard as Card } from "./queries";

export function ApprovalsCard({ card, now, onDecided }: { card: Card; now: number; onDecided: () => void }) {
  return (
    <>
      <div className={s.figures}>
        <div className={s.figure}>
          <Link href="/approvals/?tab=pending" className={`${s.big} ${card.pending ? s.warn : ""}`} aria-label="pending approvals">
            {formatCount(card.pending)}
          </Link>
          <span className={s.label}>pending</span>
        </div>
        {card.oldest_requested_at !== null && (
          <div className={s.figure}>
            <Link href="/approvals/?tab=pending" className={s.big}>
              {fromNow(card.oldest_requested_at, now).replace(/ ago$/, "")}
            </Link>
            <span className={s.label}>the oldest has waited</span>
          </div>
        )}
        <div className={s.figure}>
          <Link href="/approvals/?tab=pending" className={`${s.big} ${card.near_expiry ? s.bad : ""}`}>
            {formatCount(card.near_expiry)}
          </Link>
          <span className={s.label}>expire within {card.near_expiry_minutes} min</span>
        </div>
      </div>
      {card.pending === 0 ? (
        <p className="quiet">Nobody is waiting for a decision.</p>
      ) : (
        <ul className={s.list} aria-label="oldest pending requests">
          {card.oldest.map((a) => (
            <Request key={a.id} approval={a} now={now} onDecided={onDecided} />
          ))}
        </ul>
      )}
      {card.pending > card.oldest.length && (
        <p className="small">
          <Link href="/approvals/?tab=pending">All {formatCount(card.pending)} pending requests →</Link>
        </p>
      )}
    </>
  );
}

function Request({ approval: a, now, onDecided }: { approval: Approval; now: number; onDecided: () => void }) {
  const who = useWho();
  const decide = useDecide();
  const [rejecting, setRejecting] = useState(false);
  const [reason, setReason] = useState("");
  const refusal = whyNot(a, who, now);
  const busy = decide.isPending;
  const send = (decision: "approved" | "rejected", why?: string) =>
    decide.mutate({ approval: a, decision, reason: why }, { onSettled: onDecided });

  return (
    <li className={s.request} data-id={a.id} aria-label={`${a.action} for ${a.agent || "an agent"}`}>
      <div className={s.what}>
        <Link href={`/approvals/view/?id=${a.id}`}>
          <strong>{a.action}</strong>
        </Link>{" "}
        <span className="quiet">
          by {a.agent || "an agent"}, needs {a.min_role}
        </span>
        <div className="small quiet">
          asked <Time value={a.requested_at} now={now} />
          {a.expires_at !== null && <> · expires {fromNow(a.expires_at, now)}</>}
        </div>
      </div>
      {!rejecting ? (
        <div className="buttons">
          <button
            type="button"
            className="primary"
            disabled={refusal !== null || busy}
            title={refusal ?? undefined}
            onClick={() => send("approved")}
          >
            Approve
          </button>
          <button
            type="button"
            disabled={refusal !== null || busy}
            title={refusal ?? undefined}
            onClick={() => setRejecting(true)}
          >
            Reject…
          </button>
        </div>
      ) : (
        <form
          onSubmit={(event) => {
            event.preventDefault();
            send("rejected", reason.trim());
          }}
        >
          <input
            aria-label="Why reject it?"
            placeholder="Why reject it? (the agent and the run log keep it)"
            value={reason}
            required
            maxLength={2000}
            onChange={(event) => setReason(event.target.value)}
          />
          <button type="submit" className="danger" disabled={busy || reason.trim() === ""}>
            Reject
          </button>
          <button type="button" disabled={busy} onClick={() => setRejecting(false)}>
            Cancel
          </button>
        </form>
      )}
      {refusal !== null && (
        <p className={s.refusal} role="note">
          {refusal}
        </p>
      )}
    </li>
  );
}
