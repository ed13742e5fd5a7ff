import { Suspense } from "react";

import { EvalsPage } from "@/features/evals/EvalsPage";

export default function Page() {
  return (
    <Suspense>
      <EvalsPage />
    </Suspense>
  );
}
