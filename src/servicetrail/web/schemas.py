"""The API's documented shapes (OpenAPI). Responses are built as plain dicts on the hot path."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..domain.watches import MAX_DEVICES, MAX_NAME, MAX_SRVS, MAX_URL


class Item(BaseModel):
    id: int
    logged_at: str = Field(description="UTC, ISO-8601")
    kind: str = Field(description="request, acknowledgement, response, device_alert or dcc_alert")
    request_id: str
    srv: str
    srv_title: str
    device_id: str = Field(description="empty for non-device requests")
    device_type: str | None
    smets: int | None
    user_id: str = Field(description="the DCC User the message came from or went to")
    user_role: str | None
    party_id: str | None
    response_code: str = Field(
        description="a response's DUIS ResponseCode; an alert's alert code (e.g. 8F66, N12)"
    )
    command_variant: int | None = Field(
        description="a request's DUIS CommandVariant (1-8): 4 is a critical "
        "request sent to the DCC as a pre-command (nothing reached "
        "the Device), 5-7 the signed command that does, 8 a "
        "non-device request; null for other kinds"
    )
    access: str = Field(
        description="own: your traffic; mp141: titles you may see as Responsible "
        "Supplier or Network Operator of the device"
    )
    payload: str | None = Field(None, description="present only when access is own")
    execution_at: str | None = Field(
        None,
        description="present only when access is own: a future-dated "
        "request's ExecutionDateTime (3000-12-31T00:00:00Z "
        "cancels the pending command)",
    )
    subject_device_id: str | None = Field(
        None,
        description="present only when access is own: the Device a non-device request's body names",
    )


class Page(BaseModel):
    items: list[Item]
    next_cursor: str | None = Field(
        description="pass as cursor= for the next page; null on the last"
    )


class Trigger(BaseModel):
    record: Item = Field(
        description="the request, shaped as every item: another User's without payload, "
        "execution_at or subject_device_id"
    )
    seconds_before: int = Field(
        description="whole seconds from this request to the record, rounded down; "
        "negative only for a request sharing the Request ID that was "
        "logged after the record (-3: 3 seconds after)"
    )
    link: Literal["request_id", "same_device"] = Field(
        description="request_id: it has the record's Request ID (listed first, whatever its time); "
        "same_device: another request on the record's Device in the window"
    )


class Triggers(BaseModel):
    items: list[Trigger]


class Interval(BaseModel):
    device_id: str
    party_id: str
    relation: str
    valid_from: str
    valid_to: str | None


class Why(BaseModel):
    id: int
    access: str
    rule: int = Field(
        description="the row of the visibility rule (SPEC section 3) that granted access"
    )
    reason: str
    badge: str
    interval: Interval | None = Field(description="for rule 3: the Responsibility that granted it")


class Error(BaseModel):
    error: str
    message: str
    parameter: str | None = None


class Webhook(BaseModel):
    url: str = Field(
        description="https:// (http:// to loopback only when the operator allows it)",
        min_length=1,
        max_length=MAX_URL,
    )


class NewWatch(BaseModel):
    """The bounds a schema can state; domain.watches checks the rest (printable names,
    EUI-64s, SRV numbers, a safe URL), each a 422 naming its field."""

    model_config = ConfigDict(extra="forbid")  # an unknown field is a 422 (review 25e)

    name: str = Field(description="1-200 printable characters", min_length=1, max_length=MAX_NAME)
    devices: Literal["mine"] | Annotated[list[str], Field(min_length=1, max_length=MAX_DEVICES)] = (
        Field(
            "mine",
            description="\"mine\" (every Device you hold as "
            "supplier or network operator at the record's time) or "
            "Device IDs",
        )
    )
    srvs: (
        Literal["all", "critical"] | Annotated[list[str], Field(min_length=1, max_length=MAX_SRVS)]
    ) = "all"
    kinds: Annotated[
        list[Literal["request", "acknowledgement", "response", "device_alert", "dcc_alert"]],
        Field(min_length=1),
    ] = ["request"]
    senders: Literal["others", "all"] = Field(
        "others", description="others: records whose user_id is not one of your User IDs"
    )
    webhook: Webhook | None = None


class WatchOut(BaseModel):
    id: int
    name: str
    devices: str | list[str]
    srvs: str | list[str]
    kinds: list[str]
    senders: str
    webhook: dict[str, Any] | None = Field(
        description="{url, secret} when just made (the secret shown once); {url} in a list"
    )


class WatchList(BaseModel):
    items: list[WatchOut]


class FailingDeliveries(BaseModel):
    waiting: int = Field(description="deliveries waiting for a retry after a failed attempt")
    at_least: bool = Field(
        description="true when more may wait than `waiting` (the 1,001 due next are looked at)"
    )
    attempts: int = Field(description="the attempts of the delivery retried last")
    last_error: str = Field(
        description="its last error: the status answered, the URL refused, or no answer"
    )


class WebhookState(BaseModel):
    url: str
    enabled: bool = Field(description="false once turned off (its receiver answered 410)")
    disabled_reason: str | None
    failing: FailingDeliveries | None = Field(description="null while deliveries succeed")


class Event(BaseModel):
    event_id: int
    watch_id: int
    matched_at: str
    record: Item = Field(
        description="the record's titles: no payload, execution_at or subject_device_id, "
        "even for your own records"
    )


class EventPage(BaseModel):
    events: list[Event]
    next_after: int | None = Field(
        description="the last event_id on the page (pass as after=); null when the page is empty"
    )


class Leaf(BaseModel):
    """SPEC section 7's leaf object; its canonical JSON is the leaf_data hashed."""

    v: int
    logged_at: str = Field(description="YYYY-MM-DDTHH:MM:SS.ffffffZ")
    kind: str
    request_id: str
    srv: str
    user_id: str
    device_id: str
    response_code: str
    command_variant: int | None
    payload_commitment: str = Field(description="lowercase hex SHA-256 of salt || payload")


class Proof(BaseModel):
    log: str = Field(description="the log's origin, <prefix>/<YYYY-MM>")
    leaf_index: int = Field(description="from 0")
    leaf: Leaf
    inclusion: list[str] = Field(description="RFC 9162 inclusion proof, base64 hashes")
    checkpoint: str = Field(description="the C2SP signed note the proof leads to")
    payload_salt: str | None = Field(
        None, description="hex; present only when the record is your own (access own)"
    )


class LogCheckpoint(BaseModel):
    origin: str
    checkpoint: str = Field(description="the log's newest signed checkpoint (C2SP signed note)")


class Logs(BaseModel):
    verifier_key: str = Field(description="the current key: <name>+<hex key hash>+<base64 key>")
    verifier_keys: list[str] = Field(description="the current key and every earlier one")
    logs: list[LogCheckpoint] = Field(
        description="the record logs; an auditor also gets the access logs"
    )


class Consistency(BaseModel):
    proof: list[str] = Field(description="RFC 9162 consistency proof, base64 hashes")


class AccessEntry(BaseModel):
    id: int
    at: str = Field(description="UTC, ISO-8601")
    party_id: str | None
    actor: str = Field(description='an account\'s name, "cli" or "webhook"')
    interface: Literal["api", "web", "cli", "webhook"]
    action: str = Field(
        description="search, record, why, triggers, proof, report, watch_events, stream or deliver"
    )
    filters: dict[str, Any] = Field(description="the read's parameters, as asked")
    records_returned: int
    mp141_records_returned: int
    device_ids: list[str] = Field(
        description="the distinct Devices of the MP141 records returned, at most 100"
    )


class AccessPage(BaseModel):
    items: list[AccessEntry]
    next_cursor: str | None = Field(
        description="pass as cursor= for the next page; null on the last"
    )


def inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """A model's JSON Schema with its `$defs` written in where they are named, for a schema
    placed inside an operation: `#/$defs/...` is read from the document's root, where
    there is none, so the reference did not resolve (client generators failed; audit 25d)."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def inlined(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return inlined(defs[ref.removeprefix("#/$defs/")])
            return {key: inlined(value) for key, value in node.items()}
        if isinstance(node, list):
            return [inlined(value) for value in node]
        return node

    return inlined(schema)
