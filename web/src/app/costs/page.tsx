import { Suspense } from "react";

import { CostsPage } from "@/features/costs/CostsPage";

export default function Page() {
  return (
    <Suspense>
      <CostsPage />
    </Suspense>
  );
}
