"use client";
import Link from "next/link";

import { NotBuilt } from "@/components/NotBuilt";
import { usePendingCount } from "@/features/approvals/queries";

export default function OverviewPage() {
  const pending = usePendingCount();
  return (
    <NotBuilt
      view="Overview"
      api={["GET /v1/runs?status=failed", "GET /v1/costs/daily", "GET /v1/budgets", "GET /v1/evals/regressions"]}
    >
      <p>
        Failures, cost against each cap and eval regressions will be here. Approvals waiting for a person:{" "}
        <Link href="/approvals/">{pending.data === undefined ? "…" : pending.data.count} pending</Link>.
      </p>
    </NotBuilt>
  );
}
