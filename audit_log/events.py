"""Audit events and their canonical bytes: what the Merkle log commits to.

An :class:`AuditEvent` records one security-relevant action: who (organisation,
role, subject), what (:class:`Action`, a closed set), on which resource, licence
or holder, for which purpose or matter under which legal basis, with which
:class:`Outcome`, on which node, under which trace id, and when.

Holder ids (resident ID numbers, USCCs) are personal data and never enter the
log in clear: :class:`HolderHasher` turns them into a keyed hash
(HMAC-SHA256 with a per-deployment secret), so the holder's own view and an
auditor's search work by hashing the queried id the same way, while the log
itself reveals nothing to someone without the key.

:func:`encode_event` gives the *canonical leaf bytes*: UTF-8 JSON with sorted
keys, no insignificant whitespace, absent fields omitted, no floats (RFC 8785
for this value domain: strings and one small integer). The Merkle leaf is the
hash of exactly these bytes; :func:`decode_event` only accepts bytes that
re-encode identically, so every event has one representation.

Example::

    >>> from datetime import UTC, datetime
    >>> hasher = HolderHasher(bytes(32))
    >>> event = AuditEvent(
    ...     action=Action.LICENCE_FETCH, organisation="114201000000301708",
    ...     role="application", subject="portal", holder_ref=hasher.ref("42010219900101001X"),
    ...     purpose="开办餐馆", time=datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC))
    >>> leaf = encode_event(event)
    >>> leaf[:60]
    b'{"action":"licence.fetch","holder_ref":"ac65fdb54443187ba5e9'
    >>> decode_event(leaf) == event
    True
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from zhida.errors import FieldViolation, InvalidArgument

FORMAT_VERSION = 1
MAX_FIELD_CHARS = 512
MAX_DETAILS = 32
MAX_LEAF_BYTES = 16 * 1024
HOLDER_KEY_BYTES = 32
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"  # always microseconds, always UTC

# Control characters, and lone surrogates (str can hold them; UTF-8 cannot).
_BAD_TEXT = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")
DETAIL_KEY = re.compile(r"[a-z][a-z0-9_]{0,63}")
_HOLDER_REF = re.compile(r"[0-9a-f]{64}")
_ROLES = frozenset(
    {"department", "issuer", "application", "holder", "auditor", "admin", "node", "anonymous"}
)


class Action(enum.StrEnum):
    """What happened. A closed set: adding a member is a format change, review it.

    ``data.*``: a department asks for another agency's data / the data is
    released to it / a provider department uploads a dataset to the node's
    hosted provider. ``subscription.*``: a department subscribes to a
    dataset's changes / cancels it. ``share.*``: a share request is filed / decided by the
    provider's admin. ``grant.*``: a grant is created from an approved request
    / revoked. ``licence.*``: electronic licence lifecycle (issue, amend,
    suspend, resume, revoke; expire: the node's job stored a lapsed licence
    expired) and use (fetch by a workflow, verify by a relying party).
    ``consent.*``: a holder consents to a use / withdraws it.
    ``catalog.change`` / ``negative_list.change``: the catalogue or the negative
    list is edited. ``auth.failure``: a call was refused for a bad or missing
    credential.
    """

    DATA_REQUEST = "data.request"
    DATA_RELEASE = "data.release"
    DATA_UPLOAD = "data.upload"
    SUBSCRIPTION_CREATE = "subscription.create"
    SUBSCRIPTION_CANCEL = "subscription.cancel"
    SHARE_REQUEST = "share.request"
    SHARE_DECIDE = "share.decide"
    GRANT_CREATE = "grant.create"
    GRANT_REVOKE = "grant.revoke"
    LICENCE_ISSUE = "licence.issue"
    LICENCE_AMEND = "licence.amend"
    LICENCE_SUSPEND = "licence.suspend"
    LICENCE_RESUME = "licence.resume"
    LICENCE_REVOKE = "licence.revoke"
    LICENCE_EXPIRE = "licence.expire"
    LICENCE_FETCH = "licence.fetch"
    LICENCE_VERIFY = "licence.verify"
    CONSENT_GIVE = "consent.give"
    CONSENT_WITHDRAW = "consent.withdraw"
    CATALOG_CHANGE = "catalog.change"
    NEGATIVE_LIST_CHANGE = "negative_list.change"
    AUTH_FAILURE = "auth.failure"


class Outcome(enum.StrEnum):
    """How it ended: done, refused by policy, or failed. Non-OK outcomes carry a reason."""

    OK = "ok"
    DENIED = "denied"
    ERROR = "error"


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("naive datetime")
    return value.astimezone(UTC)


def format_time(value: datetime) -> str:
    """RFC 3339 UTC with microseconds: ``2025-01-02T03:04:05.000000Z``."""
    if value.tzinfo is not UTC:
        value = _utc(value)
    # isoformat is several times faster than strftime; it ends in "+00:00" here.
    return value.isoformat(timespec="microseconds")[:-6] + "Z"


def parse_time(text: str) -> datetime:
    """Inverse of :func:`format_time` (strict)."""
    return datetime.strptime(text, TIME_FORMAT).replace(tzinfo=UTC)


# Optional text fields in leaf order; required ones are checked separately.
_TEXT_FIELDS = (
    "organisation",
    "role",
    "subject",
    "resource",
    "licence_id",
    "holder_ref",
    "purpose",
    "matter",
    "legal_basis",
    "reason",
    "node",
    "trace_id",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditEvent:
    """One entry of the log. Times must be timezone-aware; they are kept in UTC.

    ``holder_ref`` is :meth:`HolderHasher.ref` of the holder's id, never the id.
    ``details`` holds a few extra facts (``fields``: the data items released,
    ``request_id``, ...) as short strings under lower_snake_case keys; it must
    not carry personal data either.
    """

    action: Action
    time: datetime
    outcome: Outcome = Outcome.OK
    organisation: str | None = None
    role: str | None = None
    subject: str | None = None
    resource: str | None = None
    licence_id: str | None = None
    holder_ref: str | None = None
    purpose: str | None = None
    matter: str | None = None
    legal_basis: str | None = None
    reason: str | None = None
    node: str | None = None
    trace_id: str | None = None
    details: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        problems = [] if _clearly_valid(self) else _problems(self)
        if problems:
            raise InvalidArgument(
                f"invalid audit event: {problems[0].field} {problems[0].description}",
                reason="INVALID_AUDIT_EVENT",
                violations=problems,
            )
        if type(self.action) is not Action:
            object.__setattr__(self, "action", Action(self.action))
        if type(self.outcome) is not Outcome:
            object.__setattr__(self, "outcome", Outcome(self.outcome))
        if self.time.tzinfo is not UTC:
            object.__setattr__(self, "time", _utc(self.time))
        if self.details:
            object.__setattr__(self, "details", dict(sorted(self.details.items())))

    def to_json(self) -> dict[str, Any]:
        """The JSON object of the leaf (absent fields omitted)."""
        obj: dict[str, Any] = {
            "v": FORMAT_VERSION,
            "action": self.action.value,
            "outcome": self.outcome.value,
            "time": format_time(self.time),
        }
        for name in _TEXT_FIELDS:
            value = getattr(self, name)
            if value is not None:
                obj[name] = value
        if self.details:
            obj["details"] = dict(self.details)
        return obj


_GOOD_KEYS: set[str] = set()  # detail keys already found lower_snake_case


def _clearly_valid(e: AuditEvent) -> bool:
    """A quick check that accepts the common, valid event (appends are hot).

    False means "look closer": :func:`_problems` then names what is wrong, if anything.
    """
    if type(e.action) is not Action or type(e.outcome) is not Outcome:
        return False
    if not isinstance(e.time, datetime) or e.time.tzinfo is None:
        return False
    texts = [
        v
        for v in (
            e.organisation, e.role, e.subject, e.resource, e.licence_id, e.holder_ref,
            e.purpose, e.matter, e.legal_basis, e.reason, e.node, e.trace_id,
        )
        if v is not None
    ]  # fmt: skip
    details = e.details
    if details:
        # Services pass a handful of details under a few fixed keys: remember keys
        # seen valid, check values like the other texts.
        if type(details) is not dict or len(details) > MAX_DETAILS:
            return False
        for key in details:
            if key not in _GOOD_KEYS:
                if type(key) is not str or not DETAIL_KEY.fullmatch(key):
                    return False
                if len(_GOOD_KEYS) < 1024:
                    _GOOD_KEYS.add(key)
        texts.extend(details.values())
    for v in texts:
        if type(v) is not str or not v or len(v) > MAX_FIELD_CHARS:
            return False
    return (
        not _BAD_TEXT.search("".join(texts))
        and (e.role is None or e.role in _ROLES)
        and (e.holder_ref is None or _HOLDER_REF.fullmatch(e.holder_ref) is not None)
        and (e.outcome is Outcome.OK or bool(e.reason))
    )


def _problems(event: AuditEvent) -> list[FieldViolation]:
    out: list[FieldViolation] = []
    try:
        Action(event.action)
    except ValueError:
        out.append(FieldViolation("action", f"unknown action {event.action!r}"))
    try:
        outcome = Outcome(event.outcome)
    except ValueError:
        out.append(FieldViolation("outcome", f"unknown outcome {event.outcome!r}"))
        outcome = Outcome.ERROR
    if not isinstance(event.time, datetime) or event.time.tzinfo is None:
        out.append(FieldViolation("time", "must be a timezone-aware datetime"))
    for name in _TEXT_FIELDS:
        value = getattr(event, name)
        if value is not None:
            problem = _text_problem(value)
            if problem:
                out.append(FieldViolation(name, problem))
    if event.role is not None and event.role not in _ROLES:
        out.append(FieldViolation("role", f"unknown role {event.role!r}"))
    if event.holder_ref is not None and not _HOLDER_REF.fullmatch(event.holder_ref):
        out.append(FieldViolation("holder_ref", "must be HolderHasher.ref() of the id (64 hex)"))
    if outcome is not Outcome.OK and not event.reason:
        out.append(FieldViolation("reason", f"is required when the outcome is {outcome.value}"))
    if not isinstance(event.details, Mapping) or len(event.details) > MAX_DETAILS:
        out.append(FieldViolation("details", f"must be a mapping of at most {MAX_DETAILS} items"))
    else:
        for key, value in event.details.items():
            if not isinstance(key, str) or not DETAIL_KEY.fullmatch(key):
                out.append(FieldViolation(f"details[{key!r}]", "key must be lower_snake_case"))
            elif problem := _text_problem(value):
                out.append(FieldViolation(f"details.{key}", problem))
    return out


def _text_problem(value: object) -> str | None:
    if not isinstance(value, str) or not value:
        return "must be a non-empty string (or absent)"
    if len(value) > MAX_FIELD_CHARS:
        return f"is longer than {MAX_FIELD_CHARS} characters"
    if _BAD_TEXT.search(value):
        return "contains a control character or a lone surrogate"
    return None


# The C string encoder json.dumps(ensure_ascii=False) uses: escapes '"', '\\' and
# control characters only, as RFC 8785 does.
_json_string: Callable[[str], str] = json.encoder.encode_basestring


def _canonical(value: object) -> str:
    """``json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)``.

    Hand-rolled for the leaf's value domain (str, int, dict) because appends
    are hot; a unit test checks it against json.dumps.
    """
    if isinstance(value, str):
        return _json_string(value)
    if isinstance(value, dict):
        items = ",".join(f"{_json_string(k)}:{_canonical(value[k])}" for k in sorted(value))
        return "{" + items + "}"
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise TypeError(f"no canonical JSON for {type(value).__name__}")


# Every leaf key in sorted order, with the attribute holding its value.
_LEAF_KEYS = tuple(sorted(("action", "details", "outcome", "time", "v", *_TEXT_FIELDS)))
_KEY_PREFIX = {key: _json_string(key) + ":" for key in _LEAF_KEYS}


# The leaf's keys between "details" and "time" (all plain text, outcome included), and
# their JSON prefixes: encode_event writes the rest around them, in sorted key order.
_MIDDLE = tuple((key, _KEY_PREFIX[key]) for key in _LEAF_KEYS if "details" < key < "time")
assert _LEAF_KEYS[:2] == ("action", "details")
assert _LEAF_KEYS[-3:] == ("time", "trace_id", "v")


def _canonical_details(details: Mapping[str, str]) -> str:
    """``_canonical(dict(details))`` for the usual all-text details, else that."""
    try:
        return (
            "{"
            + ",".join([_json_string(k) + ":" + _json_string(details[k]) for k in sorted(details)])
            + "}"
        )
    except TypeError:  # a value that is not text: the general encoder says why
        return _canonical(dict(details))


def encode_event(event: AuditEvent) -> bytes:
    """The canonical leaf bytes of ``event`` (see the module docstring)."""
    # Equal to _canonical(event.to_json()) (a test checks), without the dict: appends are hot.
    parts = ['{"action":' + _json_string(event.action)]
    if event.details:
        parts.append('"details":' + _canonical_details(event.details))
    for key, prefix in _MIDDLE:
        value = getattr(event, key)
        if value is not None:  # enums are str subclasses: their value is encoded
            parts.append(prefix + _json_string(value))
    parts.append('"time":' + _json_string(format_time(event.time)))
    if event.trace_id is not None:
        parts.append('"trace_id":' + _json_string(event.trace_id))
    parts.append(f'"v":{FORMAT_VERSION}}}')
    leaf = ",".join(parts).encode("utf-8")
    if len(leaf) > MAX_LEAF_BYTES:
        raise InvalidArgument(
            f"audit event is {len(leaf)} bytes, more than {MAX_LEAF_BYTES}",
            reason="INVALID_AUDIT_EVENT",
        )
    return leaf


class EventFormatError(ValueError):
    """Stored bytes are not a canonical audit event."""


def decode_event(leaf: bytes) -> AuditEvent:
    """Parse canonical leaf bytes; raise :class:`EventFormatError` on anything else."""
    try:
        obj = json.loads(leaf.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise EventFormatError(f"not UTF-8 JSON: {exc}") from None
    if not isinstance(obj, dict) or obj.get("v") != FORMAT_VERSION:
        raise EventFormatError(f"not a version {FORMAT_VERSION} event object")
    known = {"v", "action", "outcome", "time", "details", *_TEXT_FIELDS}
    unknown = sorted(set(obj) - known)
    if unknown:
        raise EventFormatError(f"unknown fields {unknown}")
    try:
        event = AuditEvent(
            action=Action(str(obj.get("action"))),
            outcome=Outcome(str(obj.get("outcome"))),
            time=parse_time(str(obj.get("time"))),
            details=obj.get("details", {}),
            **{name: obj.get(name) for name in _TEXT_FIELDS},
        )
    except (InvalidArgument, ValueError, TypeError) as exc:
        raise EventFormatError(f"invalid event: {exc}") from None
    if encode_event(event) != leaf:
        raise EventFormatError("bytes are not in canonical form")
    return event


class HolderHasher:
    """Keyed hash of holder ids: HMAC-SHA256(key, normalised id), hex.

    Normalisation (strip, upper-case) makes ``42010219900101001x`` and
    ``42010219900101001X`` the same holder. The key must stay the same for the
    life of the log: rotating it would hide older events from searches.
    """

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        if not isinstance(key, bytes) or len(key) < 16:
            raise ValueError("the holder key must be at least 16 random bytes")
        self._key = key

    def ref(self, holder_id: str) -> str:
        normalised = holder_id.strip().upper()
        if not normalised:
            raise InvalidArgument(
                "holder id is empty",
                reason="INVALID_HOLDER_ID",
                violations=[FieldViolation("holder_id", "must not be empty")],
            )
        return hmac.new(self._key, normalised.encode("utf-8"), hashlib.sha256).hexdigest()

    def __repr__(self) -> str:  # never the key
        return "HolderHasher(<key>)"
