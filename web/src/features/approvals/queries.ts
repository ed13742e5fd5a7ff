/**
 * The approval queue's data, through TanStack Query. Lists poll so that a request asked, decided
 * elsewhere or expired shows up without a reload; the pending count polls on every page (the
 * navigation shows it).
 */
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";

import { ApiError, api, unwrap, type Approval } from "@/api/client";
import { useNotify } from "@/components/Notices";
import { useWho } from "@/lib/session";

export const TABS = {
  pending: { label: "Pending", statuses: "pending", every: 5_000 },
  decided: { label: "Decided", statuses: "approved,rejected,claimed,executed,failed", every: 15_000 },
  expired: { label: "Expired or withdrawn", statuses: "expired,cancelled", every: 30_000 },
} as const;
export type Tab = keyof typeof TABS;
export const LIST_LIMIT = 100;

export function useApprovals(tab: Tab) {
  const { project } = useWho();
  const { statuses, every } = TABS[tab];
  return useQuery({
    queryKey: ["approvals", project, "list", tab],
    queryFn: async () =>
      unwrap(await api.GET("/v1/approvals", { params: { query: { status: statuses, limit: LIST_LIMIT } } }))
        .approvals,
    refetchInterval: every, // a refresh keeps the rows shown until its answer replaces them
  });
}

export function usePendingCount() {
  const { project } = useWho();
  return useQuery({
    queryKey: ["approvals", project, "pending-count"],
    queryFn: async () => {
      const found = unwrap(await api.GET("/v1/approvals/pending"));
      return { count: found.pending, oldest: found.oldest_requested_at };
    },
    refetchInterval: 5_000,
  });
}

export function useApproval(id: string) {
  const { project } = useWho();
  return useQuery({
    queryKey: ["approvals", project, "one", id],
    queryFn: async () =>
      unwrap(await api.GET("/v1/approvals/{approval_id}", { params: { path: { approval_id: id } } })),
    refetchInterval: (query) => (query.state.data?.status === "pending" ? 5_000 : 30_000),
    enabled: /^[0-9a-f]{32}$/.test(id),
  });
}

export interface Decision {
  approval: Approval;
  decision: "approved" | "rejected";
  reason?: string;
}

/**
 * Approve or reject, echoing the arguments hash the person was shown. What became of it is told
 * from here, not from the card: a decided request leaves the pending list (its card unmounts)
 * while the answer is still being handled.
 */
export function useDecide() {
  const queries = useQueryClient();
  const notify = useNotify();
  const { project } = useWho();
  return useMutation({
    mutationFn: async ({ approval, decision, reason }: Decision) =>
      unwrap(
        await api.POST("/v1/approvals/{approval_id}/decision", {
          params: { path: { approval_id: approval.id } },
          body: { decision, arguments_hash: approval.arguments_hash, reason: reason ?? null },
        }),
      ),
    onSuccess: (decided, { approval }) =>
      notify("done", `You ${decided.status === "rejected" ? "rejected" : "approved"} ${describe(approval)}.`),
    onError: (error, { approval }) => notify("error", decisionError(error, describe(approval))),
    onSettled: () => queries.invalidateQueries({ queryKey: ["approvals", project] }),
  });
}

export function describe(a: Approval): string {
  return `${a.action} for ${a.agent || "an agent"} (run ${a.run_id.slice(0, 8)})`;
}

/** What to tell the person when their decision was not recorded. */
function decisionError(error: Error, what: string): string {
  if (error instanceof ApiError && error.status === 409) {
    const now = error.problem.status_now;
    return typeof now === "string" && now !== "pending"
      ? `Someone else got there first: ${what} is ${now} already. Your decision was not recorded.`
      : `Not recorded: ${error.message}.`;
  }
  if (error instanceof ApiError && error.status === 403) {
    return `The server refused your decision on ${what}: ${error.message}.`;
  }
  return `Your decision on ${what} was not recorded: ${error.message}.`;
}
