"use client";
import { useSearchParams } from "next/navigation";
import { Suspense } from "react";

import { NotBuilt } from "@/components/NotBuilt";

function RunView() {
  const id = useSearchParams().get("id") ?? "";
  return (
    <NotBuilt view={`Run ${id}`} api={[`GET /v1/runs/${id || "{run_id}"}`]}>
      {/^[0-9a-f]{32}$/.test(id) && (
        <p>
          Your session can read it directly: <a href={`/v1/runs/${id}`}>the run as JSON</a>.
        </p>
      )}
    </NotBuilt>
  );
}

export default function RunViewPage() {
  return (
    <Suspense>
      <RunView />
    </Suspense>
  );
}
