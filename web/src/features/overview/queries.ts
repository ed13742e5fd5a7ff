/**
 * The overview's data: one request (GET /v1/overview) answering every card, polled so that new
 * failures, spend and approval requests show up without a reload. A card the server could not
 * compute comes back as `{ error }` in its place; the page shows that card's error alone.
 */
import { keepPreviousData, useQuery } from "@tanstack/react-query";

import { api, unwrap } from "@/api/client";
import type { components } from "@/api/schema";
import { useWho } from "@/lib/session";

type Schemas = components["schemas"];
export type Overview = Schemas["OverviewOut"];
export type CardError = Schemas["CardError"];
export type ApprovalsCard = Schemas["ApprovalsCardOut"];
export type FailuresCard = Schemas["FailuresCardOut"];
export type CostCard = Schemas["CostCardOut"];
export type QualityCard = Schemas["QualityCardOut"];
export type SeriesCard = Schemas["SeriesCardOut"];
export type HourBucket = Schemas["HourOut"];

export type Window = "24h" | "7d";
export const OVERVIEW_EVERY_MS = 5_000;

export function useOverview(window: Window) {
  const { project } = useWho();
  return useQuery({
    queryKey: ["overview", project, window],
    queryFn: async () => unwrap(await api.GET("/v1/overview", { params: { query: { window } } })),
    refetchInterval: OVERVIEW_EVERY_MS,
    placeholderData: keepPreviousData, // switching the window keeps the cards shown meanwhile
  });
}

/** The card's data, or null when the server answered its error instead. */
export function failed<T extends object>(card: T | CardError): card is CardError {
  return "error" in card && Object.keys(card).length === 1;
}
