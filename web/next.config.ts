import type { NextConfig } from "next";
import { PHASE_DEVELOPMENT_SERVER } from "next/constants";

/**
 * Production is a static export (`out/`) that the Python server serves at `/`: no Node at run
 * time, so nothing here may need a Node server (no route handlers, middleware, dynamic segments).
 * `trailingSlash` makes every page a directory with an `index.html`, which a plain file server
 * (ours) finds without rewriting.
 *
 * `npm run dev` serves the pages with hot reload and forwards `/v1/...` to a running controlroom
 * server (`CONTROLROOM_URL`, default http://127.0.0.1:8750), so the browser sees one origin and the
 * session cookie works as in production.
 */
export default function config(phase: string): NextConfig {
  const common: NextConfig = {
    reactStrictMode: true,
    poweredByHeader: false,
    trailingSlash: true,
  };
  if (phase === PHASE_DEVELOPMENT_SERVER) {
    const server = (process.env.CONTROLROOM_URL ?? "http://127.0.0.1:8750").replace(/\/$/, "");
    return {
      ...common,
      // API paths have no trailing slash: forward them as they are
      skipTrailingSlashRedirect: true,
      async rewrites() {
        return [{ source: "/v1/:path*", destination: `${server}/v1/:path*` }];
      },
    };
  }
  return { ...common, output: "export", images: { unoptimized: true } };
}
