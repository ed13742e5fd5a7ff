import { NotBuilt } from "@/components/NotBuilt";

export default function SettingsPage() {
  return (
    <NotBuilt
      view="Settings"
      api={["GET /v1/keys", "GET /v1/users", "GET /v1/budgets", "GET /v1/prices", "GET /v1/approval-policies", "GET /v1/webhooks"]}
    />
  );
}
