"""One money module: conversions and the one rounding rule, and the property that matters — for any
usage or reported cost, the cap's ledger (over real HTTP, on both databases) and the read model's
fold charge a call the same nano-dollars."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from conftest import LiveServer
from controlroom import events as ev
from controlroom import money
from controlroom.cost import PriceOverride, Pricer
from controlroom.projections import fold

RATES = {"input_per_mtok": "0.075", "output_per_mtok": "0.3", "cache_read_per_mtok": "0.0375"}
T0 = 1_790_000_000 * 10**9
PRICER = Pricer([PriceOverride(model="prop-1", provider=None, **{k: Decimal(v) for k, v in RATES.items()})])


def test_halves_round_up_everywhere() -> None:
    assert money.to_nanos("0.0000000005") == 1
    assert money.to_nanos("0.0000000015") == 2  # half-even would give 2, and 0.0000000025 -> 2
    assert money.to_nanos("0.0000000025") == 3
    assert money.to_nanos("0.00000000049") == 0
    assert money.ceil_nanos(Decimal("0.0000000001")) == 1


@given(st.integers(min_value=0, max_value=10**18))
def test_usd_strings_are_exact(nanos: int) -> None:
    text = money.to_usd(nanos)
    assert money.to_nanos(text) == nanos
    assert money.parse_usd(text, "x", maximum=Decimal(10**9)) == nanos
    assert not text.endswith(".") and (text == "0" or not ("." in text and text.endswith("0")))


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("abc", "cap_usd 'abc' is not a decimal number of USD"),
        ("-1", "cap_usd '-1' must be between 0 and"),
        ("NaN", "cap_usd 'NaN' must be between 0 and"),
        ("1000000001", "must be between 0 and 1000000000 USD"),
        (True, "cap_usd must be a decimal number of USD"),
        (None, "cap_usd must be a decimal number of USD"),
    ],
)
def test_bad_amounts_name_the_field_and_the_value(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        money.parse_usd(value, "cap_usd")


def test_the_usage_fields_are_declared_once() -> None:
    assert tuple(ev.Usage.model_fields) == money.USAGE_FIELDS == fold.TOKEN_FIELDS
    assert tuple(money.Usage().as_dict()) == money.USAGE_FIELDS
    for name in money.USAGE_FIELDS:
        (bound,) = (m.le for m in ev.Usage.model_fields[name].metadata if hasattr(m, "le"))
        assert bound == money.MAX_TOKENS


def read_model_charge(usage: dict[str, int] | None, cost_usd: str | None) -> int | None:
    """What the fold charges a call whose span reports this usage and cost."""
    body: dict[str, object] = {
        "span_id": "b" * 16,
        "name": "chat",
        "kind": "llm",
        "model": "prop-1",
        "ended_at": T0,
    }
    if usage is not None:
        body["usage"] = usage
    if cost_usd is not None:
        body["cost_usd"] = cost_usd
    event = ev.validate_event(
        {"id": "e", "type": ev.SPAN_RECORDED, "run_id": "a" * 32, "ts": T0, "body": body}
    )
    span = fold.new_span(1, "a" * 32, "b" * 16, 1)
    stored = event.body.model_dump(mode="json", exclude_defaults=True)  # as the log keeps it
    fold.apply_span_event(span, ev.SPAN_RECORDED, event.ts, stored)
    fold.price_span(span, PRICER)
    charge = span["cost_nanos"]
    assert charge is None or isinstance(charge, int)
    return charge


usages = st.fixed_dictionaries(
    {
        "input_tokens": st.integers(0, 10**9),
        "output_tokens": st.integers(0, 10**9),
        "cache_read_tokens": st.integers(0, 10**6),
    }
).map(lambda u: {**u, "input_tokens": u["input_tokens"] + u["cache_read_tokens"]})
costs = st.decimals(min_value=0, max_value=10**6, places=12, allow_nan=False, allow_infinity=False).map(
    lambda d: format(d, "f")
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(usage=usages, cost_usd=st.none() | costs)
@example(usage={"input_tokens": 0, "output_tokens": 0, "cache_read_tokens": 0}, cost_usd="0.0000000025")
@example(
    usage={"input_tokens": 13, "output_tokens": 0, "cache_read_tokens": 13}, cost_usd=None
)  # 487.5 nanos
def test_the_ledger_and_the_read_model_charge_the_same(
    live: LiveServer, usage: dict[str, int], cost_usd: str | None
) -> None:
    with live.client(admin=True) as http:
        if not http.get("/v1/prices").json()["prices"]:
            assert http.post("/v1/prices", json={"model": "prop-1", **RATES}).status_code == 201
            assert http.put("/v1/budgets", json={"cap_usd": "1000000000"}).status_code == 200
        r = http.post(
            "/v1/budget/reservations", json={"model": "prop-1", "input_tokens": 1, "max_output_tokens": 1}
        )
        assert r.status_code == 201, r.text
        settle = {"outcome": "completed", "usage": usage}
        if cost_usd is not None:
            settle["cost_usd"] = cost_usd
        s = http.post(f"/v1/budget/reservations/{r.json()['reservation_id']}/settle", json=settle)
        assert s.status_code == 200, s.text
    assert money.to_nanos(s.json()["actual_usd"]) == read_model_charge(usage, cost_usd)
