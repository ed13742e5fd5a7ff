import type { ReactNode } from "react";

/** A view the dashboard will have, not built yet: said plainly, with where the data is meanwhile. */
export function NotBuilt({ view, api, children }: { view: string; api: string[]; children?: ReactNode }) {
  return (
    <section className="not-built">
      <h1>{view}</h1>
      <p>
        <strong>Not built yet.</strong> This view is planned; until it exists, the same data is in the API:
      </p>
      <ul>
        {api.map((a) => (
          <li key={a} className="mono">
            {a}
          </li>
        ))}
      </ul>
      {children}
    </section>
  );
}
