import { NotBuilt } from "@/components/NotBuilt";

export default function RunsPage() {
  return <NotBuilt view="Runs" api={["GET /v1/runs (filters, keyset paging: docs/api.md)"]} />;
}
