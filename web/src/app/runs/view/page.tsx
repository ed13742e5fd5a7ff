"use client";
import { Suspense } from "react";

import { RunPage } from "@/features/run/RunPage";

export default function RunViewPage() {
  return (
    <Suspense>
      <RunPage />
    </Suspense>
  );
}
