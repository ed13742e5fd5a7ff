"""Request and response shapes of the people side of the API: sessions and approvals (declared
once; the routers map domain objects to them)."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import Field, WithJsonSchema
from typing_extensions import TypeAliasType

from controlroom.approvals.requests import MAX_REASON, STATUSES
from controlroom.server.schemas import RequestRunId, RequestSpanId, Text, _In, _Out

RoleName = Literal["viewer", "approver", "admin"]
Status = Literal[STATUSES]  # type: ignore[valid-type]
ApprovalIdPattern = "^[0-9a-f]{32}$"
Sha256Hex = Annotated[str, Field(pattern="^[0-9a-f]{64}$")]
Int64 = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]
# Any JSON the store can keep exactly: no NUL in strings or keys (PostgreSQL), integers within 64 bits.
StoredJson = TypeAliasType(  # type: ignore[misc]
    "StoredJson",
    Union[  # noqa: UP007 (a recursive alias needs the Union spelling)
        Text,
        Int64,
        float,
        bool,
        list["StoredJson"],  # type: ignore[misc]
        Annotated[
            dict[Text, "StoredJson"],  # type: ignore[misc]
            WithJsonSchema(
                {
                    "type": "object",
                    "propertyNames": {"pattern": "^[^\\u0000]*$"},
                    "additionalProperties": {"$ref": "#/components/schemas/StoredJson"},
                }
            ),
        ],
        None,
    ],
)


class LoginIn(_In):
    login: Text = Field(min_length=1, max_length=128)
    password: Text = Field(min_length=1, max_length=1024)


class Membership(_Out):
    project: str
    role: RoleName


class SessionOut(_Out):
    login: str
    name: str
    projects: list[Membership]
    expires_at: str | None = Field(description="When the session ends at the latest (RFC 3339)")


class ErrorIn(_In):
    type: Text = Field(min_length=1, max_length=256)
    message: Text = Field("", max_length=8192)


class ApprovalRequestIn(_In):
    run_id: RequestRunId
    action: Text = Field(min_length=1, max_length=256)
    arguments: StoredJson = Field(None, description="The action's arguments, as it will run with them (JSON)")
    idempotency_key: Text = Field(
        min_length=1,
        max_length=256,
        description="The model's tool-call id when there is one, else a step key in the run: asking "
        "again with the same run, key and arguments finds the same request",
    )
    agent: Text = Field("", max_length=256)
    span_id: RequestSpanId | None = None
    started_by: Text | None = Field(
        None, max_length=256, description="Login of the person who started the run (four eyes)"
    )
    min_role: RoleName | None = Field(None, description="A stricter role than the action's policy")


class DecisionIn(_In):
    decision: Literal["approved", "rejected"]
    arguments_hash: Sha256Hex = Field(description="The arguments_hash of the request as you saw it")
    reason: Text | None = Field(None, max_length=MAX_REASON, description="Required to reject")


class ClaimIn(_In):
    arguments_hash: Sha256Hex = Field(description="The hash of the arguments the action will run with")


class OutcomeIn(_In):
    outcome: Literal["executed", "failed"]
    error: ErrorIn | None = None


class ResolutionIn(_In):
    outcome: Literal["executed", "failed"] = Field(description="What became of the claimed action")
    reason: Text = Field(min_length=1, max_length=MAX_REASON, description="What you found, and how")


class CancelIn(_In):
    reason: Text | None = Field(None, max_length=MAX_REASON)


class ApprovalOut(_Out):
    id: str
    run_id: str
    span_id: str | None
    agent: str
    action: str
    arguments: Any
    arguments_hash: str
    idempotency_key: str
    status: Status
    min_role: RoleName
    four_eyes: bool
    started_by: str | None
    requested_at: str
    expires_at: str | None
    decided_at: str | None
    decided_by: str | None
    decided_role: RoleName | None
    reason: str | None
    claimed_at: str | None
    completed_at: str | None
    error: dict[str, Any] | None


class ApprovalList(_Out):
    approvals: list[ApprovalOut]


class PendingOut(_Out):
    pending: int = Field(description="Requests waiting for a person's decision")
    oldest_requested_at: str | None = Field(
        description="When the longest-waiting one was asked (none pending: null)"
    )
