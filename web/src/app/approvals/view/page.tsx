import { Suspense } from "react";

import { ApprovalView } from "@/features/approvals/ApprovalView";

export default function Page() {
  return (
    <Suspense>
      <ApprovalView />
    </Suspense>
  );
}
