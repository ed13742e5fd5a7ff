import { NotBuilt } from "@/components/NotBuilt";

export default function EvalsPage() {
  return (
    <NotBuilt
      view="Evals"
      api={["GET /v1/evals/configs", "GET /v1/evals/jobs", "GET /v1/evals/regressions", "GET /v1/scores/daily"]}
    />
  );
}
