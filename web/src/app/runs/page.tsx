import { Suspense } from "react";

import { RunsPage } from "@/features/runs/RunsPage";

export default function Page() {
  return (
    <Suspense>
      <RunsPage />
    </Suspense>
  );
}
