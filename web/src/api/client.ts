/**
 * The typed client of the controlroom API. `schema.d.ts` is generated from the server's OpenAPI
 * document (`npm run api:generate`; a Python test fails when `openapi.json` is stale, and
 * `npm run api:check` when this file is), so a changed endpoint breaks the build, not the page.
 *
 * Every request goes to the page's own origin with the session cookie. Changes carry
 * `X-Controlroom-CSRF: 1` (the server refuses a cookie-authenticated change without it), and a
 * person in several projects names the one they are looking at with `Controlroom-Project`.
 */
import createClient, { type Middleware } from "openapi-fetch";

import type { components, paths } from "./schema";

export type Approval = components["schemas"]["ApprovalOut"];
export type Session = components["schemas"]["SessionOut"];
export type Role = components["schemas"]["Membership"]["role"];
export type Problem = components["schemas"]["Problem"];

/** A problem document (RFC 9457) the server answered, as an error to throw and show. */
export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  readonly problem: Record<string, unknown>;

  constructor(status: number, problem: Record<string, unknown>) {
    const detail = typeof problem.detail === "string" ? problem.detail : `HTTP ${status}`;
    super(detail);
    this.name = "ApiError";
    this.status = status;
    this.code = typeof problem.code === "string" ? problem.code : "http_error";
    this.problem = problem;
  }
}

let project: string | null = null;

/** The project later requests are about (null: the person's only one). */
export function setProject(name: string | null): void {
  project = name;
}

const headers: Middleware = {
  onRequest({ request }) {
    if (request.method !== "GET" && request.method !== "HEAD") {
      request.headers.set("X-Controlroom-CSRF", "1");
    }
    if (project !== null) {
      request.headers.set("Controlroom-Project", project);
    }
    return request;
  },
};

export const api = createClient<paths>({ baseUrl: "", credentials: "same-origin" });
api.use(headers);

/** The data of an answer, or the server's problem document thrown as an ApiError. */
export function unwrap<T>(result: { data?: T; error?: unknown; response: Response }): T {
  if (result.error !== undefined || !result.response.ok) {
    const problem =
      typeof result.error === "object" && result.error !== null
        ? (result.error as Record<string, unknown>)
        : { detail: `HTTP ${result.response.status}` };
    throw new ApiError(result.response.status, problem);
  }
  return result.data as T;
}
