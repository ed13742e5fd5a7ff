"""Request and response shapes of the project's administration: API keys, people, approval
policies and webhooks (declared once; the admin router maps domain objects to them). Secrets (a
new key, a new webhook's signing secret) appear only in the answer that creates them."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from controlroom.accounts.passwords import MAX_LENGTH, MIN_LENGTH
from controlroom.approvals.policies import MAX_EXPIRY_SECONDS
from controlroom.events import APPROVAL_EVENT_TYPES
from controlroom.notifications.webhooks import DEFAULT_EVENTS, MAX_URL, URL_PATTERN
from controlroom.server.people_schemas import RoleName
from controlroom.server.schemas import Text, _In, _Out

KeyScope = Literal["agent", "admin"]
LOGIN_PATTERN = "^[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}$"
"""A login as a request writes it (stored lower-case)."""
Login = Annotated[str, Field(pattern=LOGIN_PATTERN, description="A user name or an email (case-insensitive)")]
Password = Annotated[str, Field(min_length=MIN_LENGTH, max_length=MAX_LENGTH, description="Never echoed")]
WebhookId = Annotated[int, Field(ge=1, le=2**31 - 1)]
ApprovalEventType = Literal[APPROVAL_EVENT_TYPES]  # type: ignore[valid-type]
DeliveryState = Literal["pending", "delivered", "failed"]


# -- keys -------------------------------------------------------------------------------------------
class KeyIn(_In):
    name: Text = Field("default", min_length=1, max_length=128, description="A label for the key")
    scope: KeyScope = Field(
        "agent", description="agent: send, read, reserve, request approvals; admin: also manage the project"
    )


class KeyOut(_Out):
    id: int
    name: str
    prefix: str = Field(description="The key's first 10 characters, to recognise it by")
    scope: KeyScope
    created_at: str
    revoked_at: str | None
    last_used_at: str | None = Field(
        description="When it last authenticated a request, to within a minute or so; null: never"
    )


class NewKeyOut(KeyOut):
    key: str = Field(description="The key itself: shown in this answer only, store it now")


class KeyList(_Out):
    keys: list[KeyOut]


# -- people -----------------------------------------------------------------------------------------
class UserIn(_In):
    login: Login
    name: Text | None = Field(None, max_length=256, description="Display name (default: the login)")
    password: Password
    role: RoleName


class UserPatch(_In):
    role: RoleName | None = Field(None, description="The role in this project (adds a user not in it yet)")
    disabled: bool | None = Field(
        None, description="true: disable (sessions end, login refused); false: enable"
    )
    password: Password | None = None


class UserOut(_Out):
    login: str
    name: str
    role: RoleName = Field(description="The role in this project")
    disabled: bool
    created_at: str


class UserList(_Out):
    users: list[UserOut]


# -- approval policies ------------------------------------------------------------------------------
class PolicyIn(_In):
    min_role: RoleName = Field("approver", description="The least role that may decide")
    four_eyes: bool = Field(False, description="The person who started the run may not approve it")
    expires_after_seconds: float | None = Field(
        None, gt=0, le=MAX_EXPIRY_SECONDS, description="A request nobody decided by then expires; null: never"
    )
    notify: list[WebhookId] | None = Field(
        None,
        max_length=100,
        description="The webhooks (ids, of this project) told of this action's approval events; "
        "null: every webhook of the project; []: none",
    )


class PolicyOut(_Out):
    action: str
    min_role: RoleName
    four_eyes: bool
    expires_after_seconds: float | None
    notify: list[int] | None


class PolicyList(_Out):
    policies: list[PolicyOut]


# -- webhooks ---------------------------------------------------------------------------------------
class WebhookIn(_In):
    url: str = Field(
        max_length=MAX_URL,
        pattern=URL_PATTERN,
        description="http(s), a host name or IPv4 address, optional port, then printable ASCII",
    )
    format: Literal["json", "slack"] = Field(
        "json", description="json: a JSON document; slack: a Slack incoming-webhook message"
    )
    event_types: list[ApprovalEventType] = Field(
        default_factory=lambda: list(DEFAULT_EVENTS), min_length=1, max_length=len(APPROVAL_EVENT_TYPES)
    )


class WebhookOut(_Out):
    id: int
    url: str = Field(
        description="Whole for admins; for others only up to the host (a path may be a credential)"
    )
    format: Literal["json", "slack"]
    event_types: list[str]
    active: bool
    created_at: str
    disabled_at: str | None


class NewWebhookOut(WebhookOut):
    secret: str = Field(description="The signing secret: shown in this answer only, store it now")


class WebhookList(_Out):
    webhooks: list[WebhookOut]


class DeliveryOut(_Out):
    id: int
    event_id: str = Field(description="The run-log event told of (test-...: a test delivery)")
    event_type: str
    state: DeliveryState = Field(description="pending (to be tried again), delivered, failed (given up)")
    attempts: int
    last_status: int | None = Field(description="The receiver's HTTP status at the last attempt")
    last_error: str | None
    created_at: str
    next_attempt_at: str | None = Field(description="When it is tried next (pending only)")
    delivered_at: str | None


class DeliveryList(_Out):
    deliveries: list[DeliveryOut]


class WebhookTestOut(_Out):
    delivery_id: int = Field(description="Its row in the delivery log")
    delivered: bool = Field(description="The receiver answered 2xx")
    status: int | None = Field(description="The receiver's HTTP status; null when it could not be reached")
    error: str | None
