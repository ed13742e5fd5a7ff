"""GET /v1/prices/models over real HTTP, on both databases: the models a project called in a
period, most called first, with the prices that apply now and where they come from (the
project's override, the built-in list, or none)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from api_support import assert_problem
from sqlalchemy import insert

from conftest import LiveServer
from controlroom.accounts import projects as pr
from controlroom.store.tables import cost_daily


def _called(
    live: LiveServer, *, days_ago: int, provider: str, model: str, calls: int, unpriced: int = 0
) -> None:
    day = (datetime.now(UTC).date() - timedelta(days=days_ago)).isoformat()  # acme's timezone is UTC
    zero = dict.fromkeys(
        (
            "input_tokens",
            "output_tokens",
            "cache_read_tokens",
            "cache_write_tokens",
            "reasoning_tokens",
            "cost_nanos",
        ),
        0,
    )
    with live.store.write() as conn:
        project = pr.get_project(conn, name="acme")
        assert project is not None
        conn.execute(
            insert(cost_daily).values(
                project_id=project.id,
                day=day,
                agent="bot",
                provider=provider,
                model=model,
                calls=calls,
                unpriced_calls=unpriced,
                **zero,
            )
        )


def test_the_models_called_are_listed_with_their_price_now_and_its_source(live: LiveServer) -> None:
    _called(live, days_ago=0, provider="openai", model="gpt-4o", calls=7)
    _called(live, days_ago=3, provider="openai", model="gpt-4o", calls=3)
    _called(live, days_ago=1, provider="acme", model="acme-1", calls=4)
    _called(live, days_ago=0, provider="", model="mystery-model-x", calls=2, unpriced=2)
    _called(live, days_ago=45, provider="openai", model="gpt-4o-mini", calls=50)  # before the period
    with live.client(admin=True) as admin:
        made = admin.post(
            "/v1/prices", json={"model": "ACME-1", "input_per_mtok": "2.5", "output_per_mtok": "10"}
        )
        assert made.status_code == 201, made.text
    with live.client() as agent:
        r = agent.get("/v1/prices/models")
        assert r.status_code == 200, r.text
        models: list[dict[str, Any]] = r.json()["models"]
        assert [(m["model"], m["calls"]) for m in models] == [
            ("gpt-4o", 10),
            ("acme-1", 4),
            ("mystery-model-x", 2),
        ]
        gpt, acme, mystery = models
        assert gpt["source"] == "built_in" and gpt["provider"] == "openai"
        assert Decimal(gpt["input_per_mtok"]) > 0 and Decimal(gpt["output_per_mtok"]) > Decimal(
            gpt["input_per_mtok"]
        )
        assert gpt["last_day"] == datetime.now(UTC).date().isoformat()
        assert (acme["source"], acme["input_per_mtok"], acme["output_per_mtok"]) == ("override", "2.5", "10")
        assert acme["cache_read_per_mtok"] == "2.5"  # no cache price of its own: the input rate
        assert (
            mystery["source"] == "unknown" and mystery["provider"] is None and mystery["unpriced_calls"] == 2
        )
        assert mystery["input_per_mtok"] is None

        longer = agent.get("/v1/prices/models", params={"days": 60}).json()["models"]
        assert next(m["model"] for m in longer) == "gpt-4o-mini"
        assert_problem(agent.get("/v1/prices/models", params={"days": 0}), 400, "invalid_query", "days")
        assert_problem(agent.get("/v1/prices/models", params={"days": "x"}), 400, "invalid_query", "days")
    with live.client("cr_not-a-key") as stranger:
        assert_problem(stranger.get("/v1/prices/models"), 401, "unauthorized")
