"""Evals over real HTTP, with the server's worker: a post-run configuration judges runs as they end;
a backfill reports its progress until done; people and agents add scores, marked as theirs; only
admins configure."""

from __future__ import annotations

from contextlib import closing
from typing import Any

import httpx
import pytest

from conftest import LiveServer
from controlroom import evaluator as controlroom_evaluator
from controlroom.accounts import projects as pr
from controlroom.accounts import users as u
from factories import rid, run_ended, run_started
from tests_support import wait_for

PASSWORD = "a long enough password"
CSRF = {"X-Controlroom-CSRF": "1"}
pytestmark = pytest.mark.usefixtures("cheap_hashes")


def person(live: LiveServer, login: str, role: u.Role) -> httpx.Client:
    with live.store.write() as conn:
        p = pr.get_project(conn, name="acme")
        assert p is not None
        u.set_role(conn, user=u.create_user(conn, login=login, password=PASSWORD), project=p, role=role)
    client = httpx.Client(base_url=live.url, timeout=30, headers=CSRF)
    assert client.post("/v1/session", json={"login": login, "password": PASSWORD}).status_code == 200
    return client


def send_runs(live: LiveServer, n: int, *, fail_every: int = 0) -> list[str]:
    ids, events = [], []
    for i in range(n):
        r = rid()
        ids.append(r)
        status = "failed" if fail_every and i % fail_every == 0 else "succeeded"
        events += [run_started(r, agent="bot"), run_ended(r, status)]
    with live.client() as agent:
        for i in range(0, len(events), 1000):  # a batch holds at most 1,000 events
            assert agent.post("/v1/events", json={"events": events[i : i + 1000]}).status_code == 200
    return ids


def scores_of(client: httpx.Client, run_id: str) -> list[dict[str, Any]]:
    r = client.get(f"/v1/runs/{run_id}")
    return list(r.json()["scores"]) if r.status_code == 200 else []


def test_post_run_evals_judge_runs_as_they_end(live: LiveServer) -> None:
    config = {"name": "ok", "evaluator": "run_succeeded", "trigger": "post_run", "grace_seconds": 0}
    with live.client(admin=True) as admin:
        r = admin.post("/v1/evals/configs", json=config)
        assert r.status_code == 201, r.text
        assert (r.json()["evaluator_name"], r.json()["jobs"][0]["kind"]) == ("run_succeeded", "post_run")
    ids = send_runs(live, 6, fail_every=3)
    with live.client() as agent:
        for i, run_id in enumerate(ids):
            [score] = wait_for(lambda run_id=run_id: scores_of(agent, run_id))
            assert (score["evaluator"], score["source"], score["kind"]) == (
                "run_succeeded",
                "evaluator",
                "boolean",
            )
            assert score["value"] == (0.0 if i % 3 == 0 else 1.0) and score["evaluator_version"] == "1"
        job = agent.get("/v1/evals/configs/ok").json()["jobs"][0]
        assert (job["processed"], job["scored"], job["errors"]) == (6, 6, 0)
        # run lists show scores, and filter by them
        failed = agent.get("/v1/runs", params={"score_name": "run_succeeded", "score_max": 0}).json()["runs"]
        assert {r["run_id"] for r in failed} == {ids[0], ids[3]}
        assert all(
            r["scores"] == [{"name": "run_succeeded", "value": 0.0, "label": None, "source": "evaluator"}]
            for r in failed
        )
        assert (
            len(agent.get("/v1/runs", params={"score_name": "run_succeeded", "score_min": 1}).json()["runs"])
            == 4
        )
        # ...and sort by them, worst first, a page at a time
        by_score = {"score_name": "run_succeeded", "order": "score_asc", "limit": 4}
        first = agent.get("/v1/runs", params=by_score).json()
        rest = agent.get("/v1/runs", params={**by_score, "cursor": first["next_cursor"]}).json()
        ordered = [r["scores"][0]["value"] for r in first["runs"] + rest["runs"]]
        assert ordered == [0.0, 0.0, 1.0, 1.0, 1.0, 1.0] and rest["next_cursor"] is None
        assert {r["run_id"] for r in first["runs"][:2]} == {ids[0], ids[3]}
        # without score_name: a score of any name
        assert len(agent.get("/v1/runs", params={"score_max": 0}).json()["runs"]) == 2
        anyname = agent.get("/v1/runs", params={"order": "score_asc"}).json()["runs"]
        assert [r["run_id"] for r in anyname][:2] == [r["run_id"] for r in first["runs"][:2]]
        bad = agent.get("/v1/runs", params={"order": "best"})
        assert bad.status_code == 400
        daily = agent.get("/v1/scores/daily", params={"evaluator": "run_succeeded"}).json()["days"]
        assert sum(d["scores"] for d in daily) == 6 and sum(d["passed"] for d in daily) == 4


def test_a_backfill_reports_progress_until_done(live: LiveServer) -> None:
    ids = send_runs(live, 40, fail_every=4)
    with live.client(admin=True) as admin:
        wait_for(lambda: admin.get(f"/v1/runs/{ids[-1]}").status_code == 200)
        assert (
            admin.post("/v1/evals/configs", json={"name": "bf", "evaluator": "run_succeeded"}).status_code
            == 201
        )
        preview = admin.post(
            "/v1/evals/configs/bf/jobs", json={"since": "2001-01-01T00:00:00Z", "dry_run": True}
        )
        assert preview.status_code == 200 and preview.json() == {"runs": 40, "estimated_cost_usd": None}
        job = admin.post("/v1/evals/configs/bf/jobs", json={"since": "2001-01-01T00:00:00Z"}).json()
        assert job["state"] == "queued" and job["total"] == 40
        done = wait_for(
            lambda: (j := admin.get(f"/v1/evals/jobs/{job['id']}").json())["state"] == "done" and j
        )
        assert (done["processed"], done["scored"], done["recent_errors"]) == (40, 40, [])
        # queryable when the job says done
        assert all(len(scores_of(admin, r)) == 1 for r in ids)


def test_who_may_configure_and_score(live: LiveServer) -> None:
    [run_id] = send_runs(live, 1)
    config = {"name": "x", "evaluator": "run_succeeded"}
    with live.client() as agent:
        wait_for(lambda: agent.get(f"/v1/runs/{run_id}").status_code == 200)
        assert agent.post("/v1/evals/configs", json=config).status_code == 403
        r = agent.post("/v1/scores", json={"run_id": run_id, "name": "thumbs", "value": 1})
        assert r.status_code == 201 and (r.json()["source"], r.json()["author"]) == ("sdk", None)
    with closing(person(live, "vic", u.Role.viewer)) as vic:
        assert vic.get("/v1/evals/configs").status_code == 200
        assert vic.post("/v1/evals/configs", json=config).status_code == 403
        assert (
            vic.post("/v1/scores", json={"run_id": run_id, "name": "thumbs", "value": 0}).status_code == 403
        )
    with closing(person(live, "amy", u.Role.approver)) as amy:
        r = amy.post(
            "/v1/scores", json={"run_id": run_id, "name": "correct", "label": "yes", "comment": "checked"}
        )
        assert r.status_code == 201 and (r.json()["source"], r.json()["author"]) == ("human", "amy")
        no_csrf = httpx.post(
            f"{live.url}/v1/scores", json={"run_id": run_id, "name": "x", "value": 1}, cookies=amy.cookies
        )
        assert no_csrf.status_code == 403
        got = wait_for(lambda: len(s := scores_of(amy, run_id)) == 2 and s)
    assert {(s["name"], s["source"], s["author"]) for s in got} == {
        ("thumbs", "sdk", None),
        ("correct", "human", "amy"),
    }


def test_a_batch_job_never_calls_the_agent(traced: LiveServer, fake: Any) -> None:
    """Evaluators read recorded runs only: while a batch job judges thousands of runs (with an
    evaluator reading each run's model calls and conversation), the agent is not run and its model
    provider hears nothing."""
    import openai

    import controlroom
    from controlroom.sdk.integrations import instrument_openai

    live, calls = traced, []

    def support_agent(question: str) -> str:
        calls.append(question)
        client = instrument_openai(openai.OpenAI(base_url=f"{fake.url}/v1", api_key="test", max_retries=0))
        with controlroom.run("support-bot", inputs={"question": question}) as run:
            answer = client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": question}]
            )
            run.set_output(answer.choices[0].message.content)
        return answer.choices[0].message.content or ""

    for i in range(3):
        support_agent(f"where is order {i}?")
    controlroom.flush()
    ids = send_runs(live, 2000)
    with live.client(admin=True) as admin:
        wait_for(lambda: admin.get(f"/v1/runs/{ids[-1]}").status_code == 200)
        config = {"name": "reads-the-conversation", "evaluator": f"{__name__}:conversation_length"}
        assert admin.post("/v1/evals/configs", json=config).status_code == 201
        job = admin.post(
            "/v1/evals/configs/reads-the-conversation/jobs", json={"since": "2001-01-01T00:00:00Z"}
        )
        heard, ran = len(fake.requests), len(calls)
        done = wait_for(
            lambda: (j := admin.get(f"/v1/evals/jobs/{job.json()['id']}").json())["state"] == "done" and j,
            timeout=60,
        )
    assert done["processed"] == 2003 and done["scored"] == 3 and done["not_applicable"] == 2000
    assert (len(fake.requests), len(calls)) == (heard, ran) == (3, 3)


@controlroom_evaluator(name="conversation_length", range=(0, 1000))
def conversation_length(run: Any) -> int | None:
    calls = run.llm_calls()
    return len(run.messages()) if calls else None
