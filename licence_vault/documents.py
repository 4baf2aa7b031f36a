"""Reading a licence's signed JWS: from the database, or the blob store for older licences.

A licence's JWS is stored with its issue event, in the transaction that
inserts the licence (:mod:`licence_vault.sql_rows`); licences issued before
that keep theirs in the blob store. Wherever it comes from, the document is
checked against the licence's ``jws_digest`` before anyone sees it: altered
bytes raise IntegrityError (``BLOB_HASH_MISMATCH``, the blob store's reason,
so that alerts on it keep working) and are never returned. The error's
metadata names the licence (``licence_id``), so the audit event of a refused
fetch can say which document failed.

Example::

    jws = read_jws(store, blobs, licence)
    jws = checked_jws(licence, documents.get(licence.licence_id), blobs)
"""

from __future__ import annotations

from licence_vault.model import Licence
from licence_vault.store import LicenceStore
from zhida.blobstore import BlobStore, sha256_hex
from zhida.blobstore.base import REASON_HASH_MISMATCH
from zhida.errors import IntegrityError

__all__ = ["checked_jws", "read_jws"]


def checked_jws(licence: Licence, document: str | None, blobs: BlobStore) -> str:
    """``document`` (the stored JWS) after its hash check, or the blob store's copy if None."""
    if document is None:
        try:
            return blobs.get(licence.jws_digest).decode("ascii")
        except IntegrityError as exc:
            exc.metadata.setdefault("licence_id", licence.licence_id)
            raise
    actual = sha256_hex(document.encode("utf-8", "surrogatepass"))
    if actual != licence.jws_digest:
        raise IntegrityError(
            f"the stored JWS of licence {licence.licence_id} is corrupted: it hashes to {actual}",
            reason=REASON_HASH_MISMATCH,
            metadata={
                "licence_id": licence.licence_id,
                "digest": licence.jws_digest,
                "actual_digest": actual,
                "backend": "database",
            },
        )
    return document


def read_jws(store: LicenceStore, blobs: BlobStore, licence: Licence) -> str:
    """The licence's JWS, checked (IntegrityError if the stored bytes changed)."""
    return checked_jws(licence, store.documents([licence]).get(licence.licence_id), blobs)
