"""The LLM judge against a fake provider, with the real ``openai`` and ``anthropic`` clients: a judged
run gets its categorical score with the reasoning; the judge's call is a run of its own agent, with
its cost, and the judged run's cost is unchanged; sampling is deterministic by run id; a cache hit
makes no call; an answer that names no valid choice is an eval error; a spent judge budget or
project cap leaves the run alone (skipped, saying why) and the provider receives no request. The
store's tests run on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from fake_provider import FakeProvider, Reply
from sqlalchemy import select

import controlroom
from controlroom.accounts.projects import Project
from controlroom.budget import ledger
from controlroom.cost.overrides import PricerCache
from controlroom.errors import ValidationFailed
from controlroom.evals import configs as cf
from controlroom.evals import jobs, judging
from controlroom.evals.builtins import builtin
from controlroom.evals.context import EvalContext, evaluating
from controlroom.evals.evaluator import evaluate
from controlroom.evals.judge import LLMJudge
from controlroom.evals.judge_prompt import parse_answer
from controlroom.evals.loading import load_runs
from controlroom.evals.snapshot import Run
from controlroom.projections.projector import Projector
from controlroom.sdk._transport import MockTransport, Request, Response
from controlroom.store import log
from controlroom.store.engine import Store
from controlroom.store.ingest import ingest_events
from controlroom.store.tables import cost_daily, eval_items, judge_cache, runs
from factories import BASE_TS, llm_usage, rid, run_ended, run_started, sid, span_ended, span_started

MODEL = "gpt-4o-mini"  # priced by genai-prices: $0.15 / M input tokens, $0.60 / M output tokens
TEMPLATE = "Did the assistant answer the question?\n\nQuestion: {inputs}\n\nAnswer: {output}"
CHOICES = {"answered": 1, "partly": 0.5, "not_answered": 0}
KEY_ENV = "CONTROLROOM_TEST_JUDGE_KEY"
GOOD = '{"reasoning": "It names the carrier and the date.", "choice": "answered"}'
CONFIG = "helpfulness"
AGENT = f"judge:{CONFIG}"


@pytest.fixture(autouse=True)
def environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The judge's key; the in-process client's spool under the test's directory; SDK errors raise."""
    monkeypatch.setenv(KEY_ENV, "sk-test")
    monkeypatch.setenv("CONTROLROOM_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CONTROLROOM_STRICT", "1")


def make_judge(fake: FakeProvider, *, provider: str = "openai", **params: Any) -> LLMJudge:
    judge = builtin(
        "llm_judge",
        template=params.pop("template", TEMPLATE),
        choices=params.pop("choices", CHOICES),
        model=MODEL,
        provider=provider,
        base_url=fake.url + ("/v1" if provider == "openai" else ""),
        api_key_env=KEY_ENV,
        **params,
    )
    assert isinstance(judge, LLMJudge)
    return judge


def agent_run(
    store: Store, project: Project, *, question: str = "Where is order 42?", answer: str = "It ships Monday."
) -> str:
    """A finished run of the judged agent, with one model call of its own (1000 in, 200 out tokens)."""
    r, s = rid(), sid()
    events = [
        run_started(r, agent="support-bot", inputs={"question": question}),
        span_started(r, s, kind="llm", provider="openai", model=MODEL, ts=BASE_TS + 1),
        span_ended(r, s, status="ok", usage=llm_usage(1000, 200), ts=BASE_TS + 2),
        run_ended(r, "succeeded", output=answer, ts=BASE_TS + 3),
    ]
    assert ingest_events(store, project.id, {"events": events}, max_events=100).accepted == 4
    Projector(store).catch_up()
    return r


def judge_runs(
    store: Store, project: Project, judge: LLMJudge, run_ids: list[str], *, job_id: int = 0
) -> judging.Counts:
    """What an eval job does: claim, judge (in an EvalContext of the configuration) and record."""
    counts = judging.judge_chunk(
        store, project_id=project.id, e=judge, job_id=job_id, run_ids=run_ids, config=CONFIG
    )
    Projector(store).catch_up()  # the judge's own runs, appended to the log, reach the read model
    return counts


def read_runs(store: Store, project: Project, agent: str) -> list[Run]:
    with store.read() as conn:
        ids = [r.run_id for r in conn.execute(select(runs.c.run_id).where(runs.c.agent == agent))]
        return list(load_runs(conn, project.id, ids).values())


def item(store: Store, run_id: str) -> Any:
    with store.read() as conn:
        return conn.execute(select(eval_items).where(eval_items.c.run_id == run_id)).first()


def scores_of(store: Store, run_id: str) -> list[Any]:
    from controlroom.store.tables import scores

    with store.read() as conn:
        return list(conn.execute(select(scores).where(scores.c.run_id == run_id)))


# -- a judged run -------------------------------------------------------------------------------


def test_a_judged_run_gets_its_choice_as_a_categorical_score_with_the_reasoning(
    store: Store, project: Project, fake: FakeProvider
) -> None:
    judged = agent_run(store, project)
    fake.script(Reply(text=GOOD, input_tokens=240, output_tokens=30))
    judge = make_judge(fake, name="helpful")
    assert judge_runs(store, project, judge, [judged]).scored == 1

    [score] = scores_of(store, judged)
    assert (score.name, score.kind, score.label, score.value) == ("helpful", "categorical", "answered", 1.0)
    assert score.comment == "It names the carrier and the date."
    assert score.evaluator_version == judge.version and score.normalised == 1.0
    assert judge.range == (0.0, 1.0)

    # the model was asked to reason first, then to choose one of the choices, about this run
    [request] = fake.requests
    assert request.path == "/v1/chat/completions" and request.headers["authorization"] == "Bearer sk-test"
    body = request.body
    assert (body["model"], body["temperature"], body["max_completion_tokens"]) == (MODEL, 0.0, 512)
    system, user = body["messages"]
    assert system["role"] == "system" and "Reason first, then choose" in system["content"]
    assert '"reasoning"' in system["content"] and "one JSON object" in system["content"]
    assert user["content"].startswith(
        'Did the assistant answer the question?\n\nQuestion: {\n  "question": "Where is order 42?"\n}\n\n'
        "Answer: It ships Monday.\n\nChoices"
    )
    assert "- answered\n- partly\n- not_answered" in user["content"]


def test_the_judges_call_is_a_run_of_its_own_agent_and_the_judged_run_costs_what_it_did(
    store: Store, project: Project, fake: FakeProvider
) -> None:
    judged = agent_run(store, project)
    [before] = read_runs(store, project, "support-bot")
    fake.script(Reply(text=GOOD, input_tokens=240, output_tokens=30))
    judge_runs(store, project, make_judge(fake), [judged])

    [after] = read_runs(store, project, "support-bot")
    assert after.cost_nanos == before.cost_nanos == 1000 * 150 + 200 * 600  # its own call only
    assert len(after.spans) == 1
    [judge_run] = read_runs(store, project, AGENT)
    assert judge_run.status == "succeeded" and judge_run.tags == ("judge",)
    assert judge_run.metadata == {"judged_run_id": judged, "judged_agent": "support-bot"}
    assert judge_run.output == {"choice": "answered", "reasoning": "It names the carrier and the date."}
    [call] = judge_run.llm_calls()
    assert (call.provider, call.model) == ("openai", MODEL)
    assert call.usage is not None and (call.usage.input_tokens, call.usage.output_tokens) == (240, 30)
    assert call.cost_nanos == judge_run.cost_nanos == 240 * 150 + 30 * 600
    with store.read() as conn:  # the day's cost rollup has it under the judge's agent
        by_agent = {r.agent: r.cost_nanos for r in conn.execute(select(cost_daily))}
    assert by_agent == {"support-bot": before.cost_nanos, AGENT: judge_run.cost_nanos}


def test_the_anthropic_client_judges_too(store: Store, project: Project, fake: FakeProvider) -> None:
    judged = agent_run(store, project)
    fake.script(Reply(text=f"```json\n{GOOD}\n```", input_tokens=200, output_tokens=25))
    judge = builtin(
        "llm_judge",
        template=TEMPLATE,
        choices=CHOICES,
        model="claude-haiku-4-5",
        provider="anthropic",
        base_url=fake.url,
        api_key_env=KEY_ENV,
    )
    assert judge_runs(store, project, judge, [judged]).scored == 1, item(store, judged)
    assert scores_of(store, judged)[0].label == "answered"
    [request] = fake.requests
    assert request.path == "/v1/messages" and request.headers["authorization"] == "Bearer sk-test"
    assert request.body["system"].startswith("You are a careful evaluator")
    assert request.body["max_tokens"] == 512 and request.body["messages"][0]["role"] == "user"
    [judge_run] = read_runs(store, project, AGENT)
    [call] = judge_run.llm_calls()
    assert call.provider == "anthropic" and call.cost_nanos == 200 * 1000 + 25 * 5000


def test_a_cache_hit_makes_no_call_and_costs_nothing(
    store: Store, project: Project, fake: FakeProvider
) -> None:
    """Two runs that make the same prompt are one question to the model: the second is answered
    from the project's cache (kept in the store: another worker, or this one after a restart, finds it)."""
    first, second = agent_run(store, project), agent_run(store, project)
    other = agent_run(store, project, answer="I cannot tell.")
    fake.script(Reply(text=GOOD), Reply(text='{"reasoning": "No answer.", "choice": "not_answered"}'))
    judge_runs(store, project, make_judge(fake), [first])
    judge_runs(store, project, make_judge(fake), [second, other])  # a new evaluator object: no memory

    assert len(fake.requests) == 2  # the first run's question, and the other run's
    assert [s.label for s in scores_of(store, second)] == ["answered"]
    assert scores_of(store, second)[0].comment == scores_of(store, first)[0].comment
    assert [s.label for s in scores_of(store, other)] == ["not_answered"]
    judge_run_ids = {r.id for r in read_runs(store, project, AGENT)}
    assert len(judge_run_ids) == 2  # no run for the cache hit: it cost nothing
    with store.read() as conn:
        cached = list(conn.execute(select(judge_cache)))
    assert {r.choice for r in cached} == {"answered", "not_answered"}
    assert {r.judge_run_id for r in cached} == judge_run_ids

    # another model (or any parameter) is another question
    fake.script(Reply(text=GOOD))
    judge_runs(store, project, make_judge(fake, temperature=0.5), [first])
    assert len(fake.requests) == 3


def test_an_answer_that_names_no_valid_choice_is_an_eval_error(
    store: Store, project: Project, fake: FakeProvider
) -> None:
    vague, prose, truncated = (
        agent_run(store, project),
        agent_run(store, project, answer="b"),
        agent_run(store, project, answer="c"),
    )
    fake.script(
        Reply(text='{"reasoning": "Somewhat.", "choice": "mostly"}'),
        Reply(text="The answer is: answered"),
        Reply(text='{"reasoning": "It names the carrier and', output_tokens=512),
    )
    counts = judge_runs(store, project, make_judge(fake), [vague, prose, truncated])
    assert (counts.scored, counts.errors) == (0, 3)
    assert "names no valid choice (got 'mostly'" in item(store, vague).error_message
    assert item(store, vague).error_type == "InvalidAnswer"
    assert "is not one JSON object: The answer is: answered" in item(store, prose).error_message
    assert scores_of(store, vague) == scores_of(store, prose) == []
    # the judge's own runs say so too, and their calls' cost is there to see
    failed = read_runs(store, project, AGENT)
    assert [r.status for r in failed] == ["failed"] * 3
    assert all(r.error is not None and r.error.type == "InvalidAnswer" for r in failed)
    with store.read() as conn:
        assert list(conn.execute(select(judge_cache))) == []  # a bad answer is never cached


def test_an_answer_cut_at_the_token_limit_says_so() -> None:
    with pytest.raises(ValueError, match="cut at max_output_tokens=64 before it named a choice"):
        parse_answer('{"reasoning": "Because', CHOICES, cut=True, max_output_tokens=64)


@pytest.mark.parametrize(
    ("text", "choice"),
    [
        (GOOD, "answered"),
        (f"  ```json\n{GOOD}\n```\n", "answered"),
        ('{"reasoning": "", "choice": " partly "}', "partly"),
    ],
)
def test_an_answer_is_one_json_object_naming_a_choice(text: str, choice: str) -> None:
    assert parse_answer(text, CHOICES).choice == choice


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('Sure! {"reasoning": "x", "choice": "answered"}', "not one JSON object"),
        ('{"reasoning": "x", "choice": "Answered"}', "names no valid choice"),
        ('{"reasoning": "x"}', "names no valid choice"),
        ('{"reasoning": "x", "choice": ["answered"]}', "names no valid choice"),
        ('{"choice": "answered"}', "gives no reasoning"),
        ('["answered"]', "not one JSON object"),
        ("answered", "not one JSON object"),
    ],
)
def test_anything_else_is_not_an_answer(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_answer(text, CHOICES)


# -- the budget ---------------------------------------------------------------------------------


def spend(store: Store, project: Project, agent: str, usd: str) -> None:
    """A call of ``agent`` settled at ``usd`` in today's ledger."""
    pricers = PricerCache()
    r = ledger.reserve(
        store,
        project=project,
        pricers=pricers,
        agent=agent,
        provider="openai",
        model=MODEL,
        input_tokens=1,
        max_output_tokens=1,
    )
    assert r.reservation_id is not None
    ledger.settle(
        store,
        project=project,
        pricers=pricers,
        reservation_id=r.reservation_id,
        outcome="completed",
        cost_usd=usd,
    )


def test_a_judge_under_a_spent_judge_budget_is_skipped_and_says_so_and_never_calls_the_provider(
    store: Store, project: Project, fake: FakeProvider
) -> None:
    judged = [agent_run(store, project) for _ in range(3)]
    judge = make_judge(fake, budget_usd="0.01")
    with store.read() as conn:  # the judge's budget is a daily cap on its agent, set when it runs
        assert ledger.get_budget(conn, project_id=project.id, agent=AGENT) is None
    with store.write() as conn:
        ledger.set_budget(store, conn, project=project, agent=AGENT, cap_usd="0.01")
    spend(store, project, AGENT, "0.01")

    with store.write() as conn:
        c = cf.create_config(
            store, conn, project_id=project.id, name=CONFIG, evaluator="llm_judge", params=dict(judge.params)
        )
        job_id = jobs.start_job(conn, c, kind="backfill", since=None, until=None)
    job = jobs.take_job(store)
    assert job is not None and job.id == job_id
    done = jobs.run_job(store, job)

    assert fake.requests == []  # refused before any request left
    assert (done.state, done.processed, done.skipped, done.scored, done.errors) == ("done", 0, 3, 0, 0)
    assert done.note is not None and done.note.startswith(
        "judge budget of $0.01 for today is spent ($0.01 spent"
    )
    assert "it resets at" in done.note
    assert all(item(store, r) is None for r in judged)  # released: judged once the budget allows
    Projector(store).catch_up()
    # one refused call is recorded (a failed run of the judge, at the refused span), and the judge
    # then leaves the rest alone without asking again
    [refused] = read_runs(store, project, AGENT)
    assert refused.status == "failed" and refused.error is not None
    assert refused.error.type == "BudgetExceeded"
    [span] = refused.spans
    assert span.attributes["controlroom.budget.agent"] == AGENT
    assert span.attributes["controlroom.budget.reason"] == "cap_reached"
    assert refused.cost_nanos == 0

    # a bigger budget in the configuration: the runs are judged by the next job over them
    fake.script(Reply(text=GOOD))
    counts = judge_runs(store, project, make_judge(fake, budget_usd="1"), judged)
    assert counts.scored == 3 and len(fake.requests) == 1  # the same prompt three times: cached
    with store.read() as conn:
        budget = ledger.get_budget(conn, project_id=project.id, agent=AGENT)
    assert budget is not None and budget.cap_nanos == 10**9


def test_the_judge_sets_its_budget_from_budget_usd(
    store: Store, project: Project, fake: FakeProvider
) -> None:
    judged = agent_run(store, project)
    fake.script(Reply(text=GOOD))
    judge_runs(store, project, make_judge(fake, budget_usd="0.25"), [judged])
    with store.read() as conn:
        budget = ledger.get_budget(conn, project_id=project.id, agent=AGENT)
        assert budget is not None and budget.cap_nanos == 250_000_000
        status = ledger.status(conn, budget)
    assert status.settled_nanos == 12 * 150 + 7 * 600  # the call's cost, settled against it
    assert status.held_nanos == 0


def test_a_refusing_project_cap_skips_the_judge_too(
    store: Store, project: Project, fake: FakeProvider
) -> None:
    judged = agent_run(store, project)
    with store.write() as conn:
        ledger.set_budget(store, conn, project=project, agent=None, cap_usd="0.0001")
    with store.read() as conn:
        run = load_runs(conn, project.id, [judged])[judged]
    with evaluating(EvalContext(store, project.id, CONFIG)):
        outcome = evaluate(make_judge(fake, budget_usd="5"), run)
    assert outcome.status == "skipped" and outcome.error is not None
    assert outcome.error.message.startswith(  # the judged agent's own spend counts toward it
        "the project's daily cost cap of $0.0001 for today is spent ($0.00027 spent, a call holds up to $"
    )
    assert fake.requests == []
    Projector(store).catch_up()
    [refused] = read_runs(store, project, AGENT)
    assert refused.error is not None and "for the project would be crossed" in (refused.error.message or "")
    assert refused.spans[0].attributes["controlroom.budget.reason"] == "cap_reached"
    assert "controlroom.budget.agent" not in refused.spans[0].attributes  # the project's cap


def test_the_judge_records_with_its_own_client_never_the_processs_default_one(
    store: Store, project: Project, fake: FakeProvider, tmp_path: Path
) -> None:
    """A process that runs a judge in an eval context (an embedded worker, a test) keeps its default
    client for its own runs: the judge's run goes to the store, and on this thread only."""
    sent: list[Request] = []

    def handler(request: Request) -> Response:
        sent.append(request)
        return (
            Response(201, b'{"reservation_id": null}') if "budget" in request.path else Response(200, b"{}")
        )

    controlroom.init(
        url="http://127.0.0.1:9",
        api_key="cr_" + "k" * 30,
        transport=MockTransport(handler),
        spool_dir=tmp_path / "spool",
        strict=True,
    )
    try:
        judged = agent_run(store, project)
        fake.script(Reply(text=GOOD), Reply(text=GOOD))
        judge_runs(store, project, make_judge(fake), [judged])
        assert sent == [] and len(read_runs(store, project, AGENT)) == 1
        # outside an eval context the judge records with the process's client
        assert evaluate(make_judge(fake, name="direct"), snapshot()).status == "scored"
        assert controlroom.flush(5)
        paths = [r.path for r in sent]
        assert "/v1/budget/reservations" in paths and "/v1/events" in paths
    finally:
        controlroom.shutdown()


# -- sampling, applicability, parameters --------------------------------------------------------


def snapshot(run_id: str | None = None, *, agent: str = "support-bot", **ended: Any) -> Run:
    r = run_id or rid()
    return Run.from_events(
        [
            run_started(r, agent=agent),
            run_ended(r, "succeeded", ts=BASE_TS + 1, **({"output": "It ships Monday."} | ended)),
        ]
    )


def test_sampling_is_deterministic_by_run_id_and_nested_across_rates(fake: FakeProvider) -> None:
    ids = [rid() for _ in range(2000)]
    tenth, fifth = make_judge(fake, sample_rate=0.1).judge, make_judge(fake, sample_rate=0.2).judge
    chosen = [r for r in ids if tenth.sampled(r)]
    assert chosen == [r for r in ids if make_judge(fake, sample_rate=0.1).judge.sampled(r)]
    assert 120 <= len(chosen) <= 280
    assert set(chosen) <= {r for r in ids if fifth.sampled(r)}
    # independent of a configuration's own sampling (a hash of the run id alone)
    selector = cf.Selector(sample_rate=0.1)
    both = [r for r in ids if tenth.sampled(r) and selector.sampled(r)]
    assert len(both) < len(chosen) / 2

    # a run not sampled is not applicable: no request
    left_out = next(r for r in ids if not tenth.sampled(r))
    assert evaluate(make_judge(fake, sample_rate=0.1), snapshot(left_out)).status == "not_applicable"
    assert fake.requests == []


def test_what_a_judge_does_not_judge_is_not_applicable(fake: FakeProvider) -> None:
    judge = make_judge(fake, template="Compare {output} with {reference}")
    assert evaluate(judge, snapshot(output=None)).status == "not_applicable"  # no output
    assert evaluate(judge, snapshot()).status == "not_applicable"  # no reference
    # a judge's own run is never judged: a post-run judge would chase its tail
    assert evaluate(make_judge(fake), snapshot(agent="judge:other")).status == "not_applicable"
    assert fake.requests == []


def test_outside_an_eval_job_the_judge_runs_unrecorded_and_caches_in_memory(fake: FakeProvider) -> None:
    fake.script(Reply(text=GOOD))
    judge = make_judge(fake, template="Unrecorded? {output} {status} {agent}")
    run = snapshot()
    first, again = evaluate(judge, run), evaluate(judge, snapshot())
    assert first.status == again.status == "scored", first
    assert first.scores[0].label == again.scores[0].label == "answered"
    assert len(fake.requests) == 1
    assert (
        "Unrecorded? It ships Monday. succeeded support-bot"
        in fake.requests[0].body["messages"][1]["content"]
    )


def test_a_missing_key_leaves_the_run_for_later(fake: FakeProvider, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV)
    outcome = evaluate(make_judge(fake), snapshot())
    assert outcome.status == "skipped" and outcome.error is not None
    assert f"environment variable {KEY_ENV} is not set" in outcome.error.message


def test_a_provider_that_fails_leaves_the_run_for_later_and_is_not_asked_again_at_once(
    fake: FakeProvider,
) -> None:
    fake.script(Reply.error(401))
    judge = make_judge(fake)
    first, second = evaluate(judge, snapshot()), evaluate(judge, snapshot())
    assert first.status == second.status == "skipped"
    assert first.error is not None and "the provider failed: AuthenticationError" in first.error.message
    assert len(fake.requests) == 1


def test_a_request_the_provider_refuses_for_this_run_is_an_eval_error(fake: FakeProvider) -> None:
    fake.script(Reply.error(400, "This model's maximum context length is 128000 tokens."))
    outcome = evaluate(make_judge(fake), snapshot())
    assert outcome.status == "error" and outcome.error is not None
    assert outcome.error.type == "BadRequestError" and "maximum context length" in outcome.error.message


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"template": "Is {answer} right?"}, "parameter 'template' has an unknown placeholder {answer}"),
        ({"template": "Is {output.text} right?"}, "unknown placeholder {output.text}"),
        ({"template": "Is {output!r} right?"}, r"unknown placeholder \{output!r\}"),
        ({"template": "Is {} right?"}, "unknown placeholder {}"),
        ({"template": "Is it { right?"}, "parameter 'template' is not a template"),
        ({"template": "Is it right?"}, "parameter 'template' names nothing of the run"),
        ({"choices": {"yes": 1}}, "parameter 'choices' must map at least two labels"),
        ({"choices": {"yes": 1, "no": 1}}, "at least two different scores"),
        ({"choices": {"yes": True, "no": 0}}, "score of 'yes' must be a finite number"),
        ({"choices": {" yes": 1, "no": 0}}, "label ' yes' must be"),
        ({"choices": ["yes", "no"]}, "parameter 'choices' must map"),
        ({"provider": "mistral"}, "parameter 'provider' must be openai, anthropic or an http"),
        (
            {"provider": "http://127.0.0.1:9/v1", "base_url": "http://127.0.0.1:9"},
            "parameter 'base_url' is for openai or anthropic",
        ),
        ({"base_url": "ftp://x"}, "parameter 'base_url' must be an http"),
        ({"api_key_env": "MY-KEY"}, "parameter 'api_key_env' must be the name of an environment variable"),
        ({"temperature": 3}, "parameter 'temperature' must be a number from 0 to 2"),
        (
            {"provider": "anthropic", "temperature": 0},
            "parameter 'temperature' is not taken by the anthropic",
        ),
        ({"max_output_tokens": 8}, "parameter 'max_output_tokens' must be from 16 to 100000"),
        ({"sample_rate": 0}, "parameter 'sample_rate' must be more than 0"),
        ({"budget_usd": "-1"}, "parameter 'budget_usd'"),
        ({"budget_usd": "lots"}, "parameter 'budget_usd'"),
        ({"name": ""}, "parameter 'name' must be a non-empty string"),
        ({"version": ""}, "parameter 'version' must be a non-empty string"),
        ({"model": ""}, "parameter 'model' must be a model name"),
        ({"colour": "red"}, "llm_judge: unknown parameter 'colour'"),
    ],
)
def test_bad_parameters_are_refused_when_the_judge_is_made(params: dict[str, Any], message: str) -> None:
    given = {"template": TEMPLATE, "choices": CHOICES, "model": MODEL, **params}
    with pytest.raises(ValueError, match=message):
        builtin("llm_judge", **given)
    with pytest.raises(ValidationFailed, match=message):  # a configuration is checked when saved
        cf.resolve("llm_judge", given)


def test_a_judge_says_what_it_is(fake: FakeProvider) -> None:
    judge = builtin("llm_judge", template=TEMPLATE, choices={"good": 5, "bad": 1}, model=MODEL)
    assert judge.name == "llm_judge" and judge.range == (1.0, 5.0)
    assert judge.params["api_key_env"] == "OPENAI_API_KEY" and judge.params["budget_usd"] is None
    # the default version follows what shapes the answer, not the sampling or the budget
    same = builtin(
        "llm_judge", template=TEMPLATE, choices={"good": 5, "bad": 1}, model=MODEL, sample_rate=0.5
    )
    other = builtin("llm_judge", template=TEMPLATE + ".", choices={"good": 5, "bad": 1}, model=MODEL)
    assert judge.version == same.version != other.version
    assert builtin("llm_judge", template=TEMPLATE, choices=CHOICES, model=MODEL, version="2").version == "2"
    url = builtin(
        "llm_judge", template=TEMPLATE, choices=CHOICES, model="m", provider="http://10.0.0.7:8000/v1"
    )
    assert url.params["api_key_env"] is None and url.judge.spec.provider == "10.0.0.7"


def test_a_backfill_preview_estimates_the_judges_cost(
    store: Store, project: Project, fake: FakeProvider
) -> None:
    for _ in range(4):
        agent_run(store, project)
    judge = make_judge(fake)
    per_run = judge.estimated_cost_per_run_usd
    assert per_run is not None and 0 < float(per_run) < 0.01
    half = make_judge(fake, sample_rate=0.5).estimated_cost_per_run_usd
    assert half is not None and abs(float(half) * 2 - float(per_run)) < 1e-9
    with store.write() as conn:
        c = cf.create_config(
            store, conn, project_id=project.id, name=CONFIG, evaluator="llm_judge", params=dict(judge.params)
        )
        preview = jobs.preview(conn, c, since=None, until=None)
    assert preview.runs == 4 and preview.estimated_cost_usd is not None
    assert abs(float(preview.estimated_cost_usd) - 4 * float(per_run)) < 1e-6
    unpriced = builtin("llm_judge", template=TEMPLATE, choices=CHOICES, model="acme-private-1")
    assert unpriced.estimated_cost_per_run_usd is None  # type: ignore[attr-defined]


def test_the_judges_scores_are_in_the_log(store: Store, project: Project, fake: FakeProvider) -> None:
    judged = [agent_run(store, project, answer=f"answer {i}") for i in range(3)]
    fake.script(*[Reply(text=GOOD)] * 3)
    assert judge_runs(store, project, make_judge(fake), judged).scored == 3
    with store.read() as conn:
        logged = log.read_after(conn, 0, 10_000, types=["score.recorded"])
    assert {e.run_id for e in logged} == set(judged)
    body = orjson.loads(logged[0].body)
    assert (body["label"], body["value"], body["kind"]) == ("answered", 1.0, "categorical")
    assert body["evaluator"] == "llm_judge" and body["comment"] == "It names the carrier and the date."


def test_an_openai_compatible_server_is_asked_at_its_url(fake: FakeProvider) -> None:
    fake.script(Reply(text=GOOD))
    judge = builtin(
        "llm_judge", template=TEMPLATE, choices=CHOICES, model="llama-3.1-8b", provider=fake.url + "/v1"
    )
    assert evaluate(judge, snapshot()).status == "scored"
    [request] = fake.requests
    assert request.path == "/v1/chat/completions" and request.body["max_tokens"] == 512
    assert "max_completion_tokens" not in request.body  # what such servers know
    assert request.headers["authorization"] == "Bearer none"  # no key asked for, none sent
