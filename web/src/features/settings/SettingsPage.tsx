"use client";
/**
 * The project's settings, one tab each, the tab in the URL (`/settings/?tab=keys`): API keys,
 * people and roles, daily caps, price overrides, webhooks with the approval policies, and the
 * eval regression thresholds. Anyone with a role reads them; only an admin changes them (the
 * controls say so, and the server refuses anyone else anyway).
 */
import Link from "next/link";
import { useSearchParams } from "next/navigation";

import { BudgetsTab } from "./BudgetsTab";
import { EvalsTab } from "./EvalsTab";
import { KeysTab } from "./KeysTab";
import { PricesTab } from "./PricesTab";
import { UsersTab } from "./UsersTab";
import { WebhooksTab } from "./WebhooksTab";

const TABS = {
  keys: { label: "API keys", view: KeysTab },
  users: { label: "Users and roles", view: UsersTab },
  budgets: { label: "Budgets", view: BudgetsTab },
  prices: { label: "Prices", view: PricesTab },
  webhooks: { label: "Webhooks and approvals", view: WebhooksTab },
  evals: { label: "Eval thresholds", view: EvalsTab },
} as const;
type Tab = keyof typeof TABS;

function isTab(value: string | null): value is Tab {
  return value !== null && value in TABS;
}

export function SettingsPage() {
  const raw = useSearchParams().get("tab");
  const tab: Tab = isTab(raw) ? raw : "keys";
  const View = TABS[tab].view;
  return (
    <section>
      <h1>Settings</h1>
      <nav className="tabs" aria-label="settings">
        {(Object.keys(TABS) as Tab[]).map((t) => (
          <Link key={t} href={`/settings/?tab=${t}`} aria-current={t === tab ? "page" : undefined}>
            {TABS[t].label}
          </Link>
        ))}
      </nav>
      <View />
    </section>
  );
}
