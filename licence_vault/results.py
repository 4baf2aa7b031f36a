"""The values the vault's operations take and give, and its argument checks.

Shared by :mod:`licence_vault.vault` (which re-exports them),
:mod:`licence_vault.issuing` and :mod:`licence_vault.access`.

Example::

    actor = Actor("11420102000040176F", "clerk-1", "420102")
    raise bad("type_codes", "must name at least one licence type")
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from licence_vault.matters import Matter
from licence_vault.model import Consent, FetchBasis, Licence, LicenceStatus, UseRecord
from licence_vault.signer import IssuerSeal
from licence_vault.types import LicenceType
from zhida.errors import FieldViolation, InvalidArgument, ZhidaError

__all__ = [
    "Actor",
    "BatchItem",
    "FetchRequest",
    "FetchResult",
    "FetchedLicence",
    "IssueResult",
    "PdfRenderer",
    "bad",
    "text_field",
]

MAX_REASON = 500


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts: an organisation (USCC) and the caller's subject."""

    organisation: str
    subject: str
    region_code: str = ""


@dataclass(frozen=True, slots=True)
class IssueResult:
    licence: Licence
    jws: str
    created: bool  # False: a retry that found the first attempt's licence


@dataclass(frozen=True, slots=True)
class BatchItem:
    """One request of a batch: its licence, or the error that refused it."""

    index: int
    request_id: str
    result: IssueResult | None = None
    error: ZhidaError | None = None


@dataclass(frozen=True, slots=True)
class FetchedLicence:
    licence: Licence
    status: LicenceStatus  # effective (expired derived from the date)
    jws: str | None  # only for valid licences
    pdf: bytes | None  # annotated copy, when PDFs are rendered
    use: UseRecord


@dataclass(frozen=True, slots=True)
class FetchResult:
    basis: FetchBasis
    matter: Matter
    consent: Consent | None
    items: list[FetchedLicence]


@dataclass(frozen=True, slots=True)
class FetchRequest:
    """One fetch (see :meth:`licence_vault.access.ConsentAndFetch.fetch`).

    ``record`` builds records from the result (the node's audit events) that
    the store's companion commit makes durable together with the use records.
    """

    actor: Actor
    holder_code: str
    type_codes: Sequence[str]
    matter_code: str
    consent_id: str = ""
    with_pdf: bool = False
    record: Callable[[FetchResult], Sequence[Any]] | None = None


class PdfRenderer(Protocol):
    """Renders and seals a licence PDF (optionally as an annotated copy with a watermark)."""

    def render(
        self,
        licence: Licence,
        licence_type: LicenceType,
        seal: IssuerSeal,
        *,
        annotation: UseRecord | None = None,
    ) -> bytes:
        """The sealed PDF; with ``annotation``, the annotated copy (加注件) that use makes:
        its watermark on the page, its identifier and use-until time in the claims."""
        ...


def bad(field: str, problem: str, reason: str = "INVALID_ARGUMENT") -> InvalidArgument:
    return InvalidArgument(
        f"{field} {problem}", reason=reason, violations=[FieldViolation(field, problem)]
    )


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def text_field(value: str, field: str, *, max_length: int = 200, required: bool = True) -> str:
    text = (value or "").strip()
    if required and not text:
        raise bad(field, "is required")
    if len(text) > max_length:
        raise bad(field, f"is longer than {max_length} characters")
    if _CONTROL.search(text):
        raise bad(field, "contains a control character")
    return text
