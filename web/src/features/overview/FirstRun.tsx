"use client";
/** What an empty project shows: how to send a first run to this server (SDK or curl). */
import { useEffect, useState } from "react";

import s from "./overview.module.css";

export function FirstRun() {
  const [origin, setOrigin] = useState("http://127.0.0.1:8750");
  useEffect(() => setOrigin(window.location.origin), []);
  const curl = `RUN=$(python3 -c "import uuid; print(uuid.uuid4().hex)")
curl -s ${origin}/v1/events -H "Authorization: Bearer $CONTROLROOM_API_KEY" \\
  -H "Content-Type: application/json" --data-binary @- <<EOF
{"events": [
  {"id": "$RUN-1", "type": "run.started", "run_id": "$RUN", "ts": "$(date -u +%FT%TZ)", "body": {"agent": "my-agent"}},
  {"id": "$RUN-2", "type": "run.ended", "run_id": "$RUN", "ts": "$(date -u +%FT%TZ)", "body": {"status": "succeeded"}}
]}
EOF`;
  const sdk = `pip install /path/to/controlroom openai   # in your agent's environment
export CONTROLROOM_URL=${origin} CONTROLROOM_API_KEY=<a key of this project>

import openai, controlroom
from controlroom.sdk.integrations import instrument_openai

controlroom.init()  # reads CONTROLROOM_URL and CONTROLROOM_API_KEY
client = instrument_openai(openai.OpenAI())

@controlroom.run("my-agent")
def answer(question: str) -> str:
    reply = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": question}])
    return reply.choices[0].message.content`;
  return (
    <section className="card" aria-label="send a first run">
      <h3>Nothing has run in this project lately</h3>
      <p>
        Runs, failures, spend and approval requests appear here as your agents send them. An API key comes from{" "}
        <code>controlroom keys create --project NAME</code> (or an admin&apos;s Settings → API keys).
      </p>
      <h4>With the Python SDK</h4>
      <pre className={s.code}>{sdk}</pre>
      <h4>Or by hand, with curl</h4>
      <pre className={s.code}>{curl}</pre>
      <p className="quiet small">This page refreshes by itself: the run shows up within seconds.</p>
    </section>
  );
}
