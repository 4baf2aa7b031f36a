"""Lifecycle rules the vault and the expiry job share: signed change records, expiry.

Every stored status change is signed by the issuer (:func:`change_record`)
and appended to the licence's history. A licence whose validity period has
ended is *expired*: reads report it at once (:meth:`Licence.effective_status`),
and :func:`expire_due` — run by the node every
``licence.expire_interval_seconds`` (:mod:`licence_vault.expiry_job`) or by
``zhida licence expire`` — stores it, one signed ``expire`` event per
licence. Running it again finds nothing to do; two runs at once cannot both
expire a licence (the store's compare-and-set decides).

What expires, and what an expired licence still allows:

* a *valid* licence past its ``valid_until`` becomes ``expired``;
* a *suspended* one keeps its stored status: the suspension is the issuer's
  decision and stays in its Token Status List (SUSPENDED), and moving it to
  ``expired`` would turn that entry back to VALID (expired has no value of
  its own, see :mod:`licence_vault.model`); it can no longer be resumed;
* amend, suspend and resume refuse a licence whose validity has ended
  (FailedPrecondition ``LICENCE_EXPIRED``: 延续 must be applied for before the
  end date; afterwards the holder applies anew); revoke stays possible —
  行政许可法 §70(一) has the issuer 注销 a licence that lapsed.

The node's job records one audit event per licence from each page's
:attr:`ExpiryReport.page`.

Example::

    report = vault.expire_due(on_progress=lambda r: print(r.page))  # this page's expiries
    print(report.expired, report.skipped, report.failed)            # today, by the vault's clock
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import NamedTuple

from licence_vault.days import licence_day
from licence_vault.model import Licence, LicenceEvent, LicenceStatus
from licence_vault.results import Actor
from licence_vault.signer import LicenceSigner
from licence_vault.store import LicenceStore
from zhida.errors import FailedPrecondition, ZhidaError

__all__ = [
    "EXPIRE",
    "EXPIRY_SUBJECT",
    "ExpiredLicence",
    "ExpiryReport",
    "change_record",
    "expire_due",
    "refuse_if_ended",
    "validity_ended",
]

EXPIRE = "expire"
EXPIRY_SUBJECT = "zhida-licence-expire"  # the history's actor subject of a job's expiry
MAX_REPORTED_FAILURES = 100


def change_record(
    signer: LicenceSigner,
    actor: Actor,
    licence: Licence,
    action: str,
    reason: str,
    now: datetime,
    **extra: str,
) -> str:
    """The issuer's signed JWS of one change (the history event's ``record``)."""
    record = {
        "证照变更记录": {
            "证照标识": licence.licence_id,
            "操作": action,
            "原因": reason,
            "操作时间": now.astimezone(UTC).isoformat(timespec="seconds"),
            "操作机构代码": actor.organisation,
            "操作人": actor.subject,
            **extra,
        },
        "iat": int(now.timestamp()),
    }
    return signer.sign_licence(licence.issuer_code, record)


def validity_ended(licence: Licence, today: date) -> bool:
    """Expired (stored), or past its ``valid_until`` on ``today``."""
    if licence.status is LicenceStatus.EXPIRED:
        return True
    return licence.valid_until is not None and today > licence.valid_until


def refuse_if_ended(licence: Licence, action: str, today: date) -> None:
    """FailedPrecondition(LICENCE_EXPIRED) if ``action`` would change a lapsed licence."""
    final = (LicenceStatus.REVOKED, LicenceStatus.SUPERSEDED)
    if licence.status in final or not validity_ended(licence, today):
        return  # a final status gets its own refusal (INVALID_STATUS_TRANSITION)
    until = licence.valid_until.isoformat() if licence.valid_until else "?"
    raise FailedPrecondition(
        f"cannot {action} licence {licence.licence_id}: its validity ended on {until}",
        reason="LICENCE_EXPIRED",
        metadata={"status": LicenceStatus.EXPIRED.value, "valid_until": until},
    )


class ExpiredLicence(NamedTuple):
    """A licence one page of :func:`expire_due` stored expired."""

    licence_id: str
    holder_code: str
    issuer_code: str
    valid_until: date


@dataclass
class ExpiryReport:
    """What one run of :func:`expire_due` did."""

    today: date
    due: int = 0  # licences found past their validity, still stored valid
    expired: int = 0  # moved to expired by this run
    skipped: int = 0  # changed meanwhile (another run, a revocation, an amendment)
    failed: int = 0  # not signed: the issuer has no usable key or seal now
    failures: list[tuple[str, str, str]] = field(default_factory=list)  # id, reason, message
    # what the latest page expired, replaced page by page (so bounded by the batch size):
    # ``on_progress`` sees each page's, e.g. to audit every expiry of a long run
    page: list[ExpiredLicence] = field(default_factory=list)


def expire_due(
    store: LicenceStore,
    signer: LicenceSigner,
    *,
    now: datetime,
    subject: str = EXPIRY_SUBJECT,
    batch_size: int = 200,
    on_progress: Callable[[ExpiryReport], None] | None = None,
) -> ExpiryReport:
    """Store ``expired`` for every valid licence whose validity ended before today.

    Pages through the due licences by identifier; each page's records are
    signed, then stored in one durable transaction. A licence its issuer can
    no longer sign for is counted in ``failed`` and left valid (reads still
    report it expired); the run goes on with the others.
    """
    today = licence_day(now)
    report = ExpiryReport(today)
    after = ""
    while True:
        due = store.due_to_expire(today, after=after, limit=batch_size)
        if not due:
            return report
        after = due[-1].licence_id
        report.due += len(due)
        events = _expire_events(signer, due, subject, now, report)
        done = set(store.expire(events, at=now)) if events else set()
        report.page = [
            ExpiredLicence(lic.licence_id, lic.holder_code, lic.issuer_code, lic.valid_until)
            for lic in due
            if lic.licence_id in done and lic.valid_until is not None
        ]
        report.expired += len(done)
        report.skipped += len(events) - len(done)
        if on_progress is not None:
            on_progress(report)


def _expire_events(
    signer: LicenceSigner,
    due: Sequence[Licence],
    subject: str,
    now: datetime,
    report: ExpiryReport,
) -> list[LicenceEvent]:
    events: list[LicenceEvent] = []
    unsigned: dict[str, ZhidaError] = {}  # issuer -> why it cannot sign (ask once per page)
    for licence in due:
        assert licence.valid_until is not None  # due_to_expire selects only those
        actor = Actor(licence.issuer_code, subject)
        reason = f"有效期届满（有效期至 {licence.valid_until.isoformat()}）"
        error = unsigned.get(licence.issuer_code)
        if error is None:
            try:
                record = change_record(signer, actor, licence, EXPIRE, reason, now)
            except ZhidaError as exc:
                error = unsigned[licence.issuer_code] = exc
        if error is not None:
            report.failed += 1
            if len(report.failures) < MAX_REPORTED_FAILURES:
                report.failures.append((licence.licence_id, error.reason, error.message))
            continue
        events.append(
            LicenceEvent(
                licence_id=licence.licence_id,
                lineage=licence.lineage,
                action=EXPIRE,
                at=now,
                actor_org=licence.issuer_code,
                actor_subject=subject,
                reason=reason,
                record=record,
            )
        )
    return events
