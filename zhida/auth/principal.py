"""Who is calling: the identity a verified bearer token carries.

Domain code receives a :class:`Principal` and never sees the token or gRPC.

Example::

    from zhida.auth.principal import Principal, Role

    p = Principal(subject="clerk-7", role=Role.DEPARTMENT,
                  organisation="11100000000013127D", region_code="420102",
                  expires_at=1_900_000_000)
    assert p.role.claim == "department"
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Role(enum.Enum):
    """A caller's role; the value is the token's ``role`` claim, the number the proto enum."""

    DEPARTMENT = ("department", 1)
    ISSUER = ("issuer", 2)
    APPLICATION = ("application", 3)
    HOLDER = ("holder", 4)
    AUDITOR = ("auditor", 5)
    ADMIN = ("admin", 6)
    NODE = ("node", 7)

    @property
    def claim(self) -> str:
        return self.value[0]

    @property
    def proto_number(self) -> int:
        return self.value[1]

    @classmethod
    def from_claim(cls, claim: str) -> Role:
        for role in cls:
            if role.claim == claim:
                return role
        raise ValueError(f"unknown role {claim!r}")


@dataclass(frozen=True, slots=True)
class Principal:
    subject: str
    role: Role
    organisation: str  # USCC (GB 32100) of the caller's organisation
    region_code: str  # GB/T 2260
    expires_at: int  # seconds since the epoch
    token_id: str | None = None
    issuer: str = ""
