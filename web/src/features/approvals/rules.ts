/**
 * What this person may do with a request, as the server decides it (approvals/requests.py): the
 * dashboard disables what a role cannot do and says why, and the server refuses it anyway.
 */
import type { Approval } from "@/api/client";
import { atLeast, type Who } from "@/lib/session";
import { parseTime } from "@/lib/time";

/** Why this person cannot decide `a` now, or null when they can. */
export function whyNot(a: Approval, who: Who, now: number): string | null {
  if (a.status !== "pending") {
    return `It is ${a.status} already.`;
  }
  if (!atLeast(who.role, "approver")) {
    return `Deciding needs the approver role; you are a ${who.role} in ${who.project}.`;
  }
  if (!atLeast(who.role, a.min_role)) {
    return `This request needs the ${a.min_role} role; you are an ${who.role}.`;
  }
  if (a.four_eyes && a.started_by !== null && a.started_by.toLowerCase() === who.session.login.toLowerCase()) {
    return "Four eyes: you started this run, so someone else decides.";
  }
  if (a.expires_at !== null && parseTime(a.expires_at).getTime() <= now) {
    return "It has expired: nobody may decide it now.";
  }
  return null;
}
