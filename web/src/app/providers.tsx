"use client";
import { QueryCache, QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { useState, type ReactNode } from "react";

import { ApiError } from "@/api/client";
import { sessionKey } from "@/lib/session";

/**
 * One query cache per page load. Client errors (4xx) are answers, not outages: never retried. A
 * 401 from any request means the session ended (logout elsewhere, expiry, a role change): the
 * session is asked again at once, which sends the person to the login page.
 */
export function Providers({ children }: { children: ReactNode }) {
  const [client] = useState(() => {
    const queries: QueryClient = new QueryClient({
      queryCache: new QueryCache({
        onError: (error, query) => {
          if (error instanceof ApiError && error.status === 401 && query.queryKey[0] !== sessionKey[0]) {
            void queries.invalidateQueries({ queryKey: sessionKey });
          }
        },
      }),
      defaultOptions: {
        queries: {
          retry: (count, error) => !(error instanceof ApiError && error.status < 500) && count < 2,
          refetchOnWindowFocus: true,
          staleTime: 2_000,
        },
      },
    });
    return queries;
  });
  return <QueryClientProvider client={client}>{children}</QueryClientProvider>;
}
