import { NotBuilt } from "@/components/NotBuilt";

export default function CostsPage() {
  return <NotBuilt view="Costs" api={["GET /v1/costs/daily?group_by=agent", "GET /v1/budgets"]} />;
}
