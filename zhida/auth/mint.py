"""Minting development tokens signed with the node's development keys.

Production tokens come from the issuer; this exists for laptops, tests, demos
and benchmarks. Inputs follow the verifier's own rules, so a token minted here
is one the node accepts (until it expires).

:data:`DEMO_ORGS` maps a few department names to *synthetic* unified social
credit codes: well-formed, with correct GB 11714 and GB 32100 check
characters, but not the departments' real registrations.

Example::

    from zhida.auth.mint import DEMO_ORGS, mint_token
    from zhida.auth.principal import Role
    from zhida.config import load_config

    token = mint_token(
        load_config(None),
        role=Role.DEPARTMENT,
        organisation=DEMO_ORGS["武汉市市场监督管理局"],
        region_code="420100",
        subject="clerk-7",
    )
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import jwt

from zhida.auth.keys import ensure_dev_keys, load_signing_key
from zhida.auth.principal import Role
from zhida.auth.verifier import organisation_problem, region_problem, subject_problem
from zhida.config import Config
from zhida.errors import FieldViolation, InvalidArgument

MAX_TTL_SECONDS = 366 * 24 * 3600

# Synthetic codes: "11" (机关) + GB/T 2260 region + 8-digit organisation code and
# its GB 11714 check + GB 32100 check character. A unit test re-validates them.
DEMO_ORGS: Mapping[str, str] = MappingProxyType(
    {
        "国家市场监督管理总局": "111000000000170137",
        "湖北省公安厅": "1142000000002001X9",
        "湖北省市场监督管理局": "11420000000020175T",
        "武汉市市场监督管理局": "114201000000301708",
        "武汉市江岸区市场监督管理局": "11420102000040176F",
        "武汉市武昌区政务服务和大数据管理局": "11420106000041013B",
    }
)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def mint_token(
    config: Config,
    *,
    role: Role,
    organisation: str,
    region_code: str,
    subject: str,
    ttl_seconds: int = 3600,
    not_before: int | None = None,
    kid: str | None = None,
) -> str:
    """A signed JWT for the given caller, valid for ``ttl_seconds``.

    The lifetime counts from ``not_before`` when that is later than now.
    Signs with the newest development key the node accepts, or with ``kid``.
    Raises InvalidArgument (with a field violation per bad input),
    FailedPrecondition when no development private key exists.
    """
    violations: list[FieldViolation] = []
    if not isinstance(role, Role):
        violations.append(FieldViolation("role", f"must be one of {[r.claim for r in Role]}"))
    for field, problem in (
        ("subject", subject_problem(subject)),
        ("organisation", organisation_problem(organisation)),
        ("region_code", region_problem(region_code)),
    ):
        if problem is not None:
            violations.append(FieldViolation(field, problem))
    if not _is_int(ttl_seconds) or not 1 <= ttl_seconds <= MAX_TTL_SECONDS:
        violations.append(
            FieldViolation("ttl_seconds", f"must be an integer from 1 to {MAX_TTL_SECONDS}")
        )
    if not_before is not None and (not _is_int(not_before) or not_before < 0):
        violations.append(FieldViolation("not_before", "must be seconds since the epoch"))
    if violations:
        raise InvalidArgument(
            "cannot mint token: " + "; ".join(f"{v.field} {v.description}" for v in violations),
            reason="INVALID_TOKEN_REQUEST",
            violations=violations,
        )

    ensure_dev_keys(config)
    key = load_signing_key(config, kid)
    now = int(time.time())
    starts = max(now, not_before) if not_before is not None else now
    claims: dict[str, Any] = {
        "iss": config.auth.issuer,
        "aud": config.auth.audience,
        "sub": subject,
        "iat": now,
        "exp": starts + ttl_seconds,
        "jti": secrets.token_urlsafe(16),
        "role": role.claim,
        "org": organisation,
        "region": region_code,
    }
    if not_before is not None:
        claims["nbf"] = not_before
    return jwt.encode(claims, key.private_key, algorithm=key.alg, headers={"kid": key.kid})
