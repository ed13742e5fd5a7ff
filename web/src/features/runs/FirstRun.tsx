"use client";
/**
 * What a newcomer sees before any run arrived: the exact lines that send one to this server (the
 * SDK, or one curl request), with the server's own address filled in.
 */
import { useEffect, useState } from "react";

import styles from "./runs.module.css";

function sdkLines(origin: string): string {
  return `pip install /path/to/controlroom   # the SDK (and the controlroom command)
export CONTROLROOM_URL=${origin}
export CONTROLROOM_API_KEY=cr_...          # an agent key: controlroom keys create --project NAME

python - <<'PY'
import controlroom

controlroom.init()  # reads CONTROLROOM_URL and CONTROLROOM_API_KEY

@controlroom.run("my-agent")  # one run per call: arguments as inputs, return value as output
def answer(question: str) -> str:
    with controlroom.tool("lookup"):
        return "It shipped yesterday."

answer("Where is my order?")
controlroom.shutdown()
PY`;
}

function curlLines(origin: string): string {
  const id = "0af7651916cd43dd8448eb211c80319c";
  return `curl -s ${origin}/v1/events \\
  -H "Authorization: Bearer $CONTROLROOM_API_KEY" \\
  -H "Content-Type: application/json" \\
  -d '{"events": [
    {"id": "first-1", "type": "run.started", "run_id": "${id}",
     "ts": "'$(date -u +%Y-%m-%dT%H:%M:%SZ)'", "body": {"agent": "my-agent"}},
    {"id": "first-2", "type": "run.ended", "run_id": "${id}",
     "ts": "'$(date -u +%Y-%m-%dT%H:%M:%SZ)'", "body": {"status": "succeeded"}}
  ]}'`;
}

export function FirstRun() {
  const [origin, setOrigin] = useState("http://127.0.0.1:8750");
  useEffect(() => setOrigin(window.location.origin), []);
  return (
    <div className={styles.firstRun} aria-label="how to send a first run">
      <h2>No runs yet</h2>
      <p>
        Runs appear here as soon as an agent sends them (this page refreshes by itself). Send a first one with the
        Python SDK:
      </p>
      <pre className="json">{sdkLines(origin)}</pre>
      <p>or over HTTP, from any language:</p>
      <pre className="json">{curlLines(origin)}</pre>
      <p className="quiet small">
        Agents instrumented with OpenTelemetry need no code change: point their OTLP exporter at{" "}
        <code>{origin}/v1/traces</code>. More in docs/sdk.md and docs/api.md.
      </p>
    </div>
  );
}
