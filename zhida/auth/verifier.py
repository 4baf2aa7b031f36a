"""Bearer-token verification: a JWT in, a :class:`Principal` out, or ``Unauthenticated``.

Tokens are JWS compact JWTs signed ES256 or EdDSA by a key in the JWKS file
(``auth.jwks_file``). Each failure raises :class:`zhida.errors.Unauthenticated`
with its own ``reason`` (``TOKEN_EXPIRED``, ``TOKEN_UNKNOWN_KEY`` …); messages
never repeat the token. Verified tokens are cached until their ``exp``, so a
client re-using its token pays for the signature check once; the JWKS is
re-read when the file changes, so rotating keys needs no restart.

Example::

    from zhida.auth.verifier import TokenVerifier
    from zhida.config import load_config
    from zhida.errors import Unauthenticated

    verifier = TokenVerifier(load_config(None).auth)
    try:
        principal = verifier.verify(token)   # the part after "Bearer "
    except Unauthenticated as exc:
        print(exc.reason, exc.message)       # TOKEN_EXPIRED token expired at 1767225600
"""

# ruff: noqa: S105

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NoReturn

import jwt
from jwt.types import Options
from stdnum.cn import uscc

from zhida.auth.keys import load_verification_keys
from zhida.auth.principal import Principal, Role
from zhida.config import AuthConfig
from zhida.errors import ConfigError, Unauthenticated
from zhida.regions import RegionCodeError, parse_region

# ErrorInfo reasons. (Ruff S105 mistakes TOKEN_* names for hard-coded secrets.)
TOKEN_MISSING = "TOKEN_MISSING"
TOKEN_MALFORMED = "TOKEN_MALFORMED"
TOKEN_ALGORITHM_NOT_ALLOWED = "TOKEN_ALGORITHM_NOT_ALLOWED"
TOKEN_UNKNOWN_KEY = "TOKEN_UNKNOWN_KEY"
TOKEN_BAD_SIGNATURE = "TOKEN_BAD_SIGNATURE"
TOKEN_EXPIRED = "TOKEN_EXPIRED"
TOKEN_NOT_YET_VALID = "TOKEN_NOT_YET_VALID"
TOKEN_WRONG_ISSUER = "TOKEN_WRONG_ISSUER"
TOKEN_WRONG_AUDIENCE = "TOKEN_WRONG_AUDIENCE"
TOKEN_BAD_CLAIMS = "TOKEN_BAD_CLAIMS"

REQUIRED_CLAIMS = ("exp", "iat", "iss", "aud", "sub", "role", "org", "region")
MAX_TOKEN_CHARS = 8192  # bounds parsing work and cache memory per entry
MAX_SUBJECT_CHARS = 256
DEFAULT_CACHE_SIZE = 4096
DEFAULT_RELOAD_INTERVAL = 1.0  # seconds between JWKS stat() calls

_ROLES_BY_CLAIM: Mapping[str, Role] = {role.claim: role for role in Role}
# Signature only: every claim is checked below, with zhida's reasons and clock.
_SIGNATURE_ONLY: Options = {
    "verify_signature": True,
    "verify_exp": False,
    "verify_nbf": False,
    "verify_iat": False,
    "verify_aud": False,
    "verify_iss": False,
    "verify_sub": False,
    "verify_jti": False,
    "require": [],
}
_log = logging.getLogger(__name__)


# --- claim rules, shared with zhida.auth.mint --------------------------------


def subject_problem(value: object) -> str | None:
    """Why ``value`` is not an acceptable ``sub`` claim, or None."""
    if not isinstance(value, str) or not value:
        return "must be a non-empty string"
    if len(value) > MAX_SUBJECT_CHARS or not value.isprintable():
        return f"must be at most {MAX_SUBJECT_CHARS} printable characters"
    return None


def role_from_claim(value: object) -> Role | None:
    """The Role a ``role`` claim names, or None when it names none."""
    return _ROLES_BY_CLAIM.get(value) if isinstance(value, str) else None


def organisation_problem(value: object) -> str | None:
    """Why ``value`` is not a unified social credit code (GB 32100), or None."""
    # Exactly the compact upper-case form: one organisation, one spelling.
    if isinstance(value, str) and value == uscc.compact(value) and bool(uscc.is_valid(value)):
        return None
    return "must be an 18-character unified social credit code with a valid check character"


def region_problem(value: object) -> str | None:
    """Why ``value`` is not a GB/T 2260 region code, or None."""
    if not isinstance(value, str):
        return "must be a six-digit GB/T 2260 region code"
    try:
        parse_region(value)
    except RegionCodeError as exc:
        return str(exc)
    return None


def _file_stamp(path: Path) -> tuple[int, int, int]:
    # The inode catches os.replace() of a same-size file within one mtime tick.
    st = os.stat(path)
    return (st.st_mtime_ns, st.st_size, st.st_ino)


# --- the cache -----------------------------------------------------------------


class _TokenCache:
    """Bounded LRU of verified tokens; an entry dies at its token's ``exp``."""

    def __init__(self, max_entries: int) -> None:
        self._max = max_entries
        self._entries: OrderedDict[str, tuple[Principal, float]] = OrderedDict()
        self._lock = threading.Lock()  # the gRPC server verifies from many threads
        # Bumped by clear(): a verification that began before a JWKS reload must
        # not cache its result after the reload (its key may have been withdrawn).
        self.generation = 0

    def get(self, token: str, now: float) -> Principal | None:
        with self._lock:
            entry = self._entries.get(token)
            if entry is None:
                return None
            if now >= entry[1]:  # expired: verify afresh (leeway, TOKEN_EXPIRED)
                del self._entries[token]
                return None
            self._entries.move_to_end(token)
            return entry[0]

    def put(
        self, token: str, principal: Principal, exp: float, now: float, generation: int
    ) -> None:
        if self._max <= 0 or now >= exp:
            return
        with self._lock:
            if generation != self.generation:
                return
            self._entries[token] = (principal, exp)
            self._entries.move_to_end(token)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.generation += 1

    def __len__(self) -> int:
        return len(self._entries)


# --- the verifier --------------------------------------------------------------


def _fail(reason: str, message: str, **metadata: str) -> NoReturn:
    raise Unauthenticated(message, reason=reason, metadata=metadata)


def _bad_claim(name: str, problem: str) -> NoReturn:
    _fail(TOKEN_BAD_CLAIMS, f"token claim '{name}' {problem}", claim=name)


def _shown(value: object) -> str:
    """A header value fit for an error message: short plain strings only."""
    if isinstance(value, str) and len(value) <= 64 and value.isascii() and value.isprintable():
        return repr(value)
    return "(unprintable)"


def _is_numeric_date(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


class TokenVerifier:
    """Checks bearer JWTs against the JWKS in ``auth.jwks_file``.

    ``clock`` gives the current time in seconds since the epoch (tests inject
    one); ``cache_size`` bounds the verified-token cache (0 disables it);
    ``reload_interval`` is the minimum time between checks of the JWKS file.
    Thread-safe.
    """

    def __init__(
        self,
        auth: AuthConfig,
        *,
        clock: Callable[[], float] = time.time,
        cache_size: int = DEFAULT_CACHE_SIZE,
        reload_interval: float = DEFAULT_RELOAD_INTERVAL,
    ) -> None:
        self._path = auth.jwks_file
        self._algorithms = frozenset(auth.algorithms)
        self._issuer = auth.issuer
        self._audience = auth.audience
        self._leeway = auth.leeway_seconds
        self._clock = clock
        self._reload_interval = reload_interval
        self._cache = _TokenCache(cache_size)
        self._jwt = jwt.PyJWT(options=_SIGNATURE_ONLY)
        self._reload_lock = threading.Lock()
        try:
            self._stamp = _file_stamp(self._path)
        except OSError as exc:
            raise ConfigError(
                "auth.jwks_file", f"cannot read {self._path}: {exc.strerror}"
            ) from None
        self._keys = load_verification_keys(self._path, self._algorithms)
        self._next_check = time.monotonic() + reload_interval

    @property
    def key_ids(self) -> frozenset[str]:
        """Kids of the keys currently accepted."""
        return frozenset(self._keys)

    @property
    def cached_tokens(self) -> int:
        """How many verified tokens the cache holds (for metrics and tests)."""
        return len(self._cache)

    def verify(self, token: str | None) -> Principal:
        """The Principal ``token`` proves; Unauthenticated with a TOKEN_* reason otherwise."""
        if not token:
            _fail(TOKEN_MISSING, "no bearer token: send 'authorization: Bearer <JWT>'")
        self._maybe_reload()
        now = self._clock()
        principal = self._cache.get(token, now)
        if principal is not None:
            return principal
        generation = self._cache.generation  # read before the keys are
        principal, exp = self._verify_uncached(token, now)
        self._cache.put(token, principal, exp, now, generation)
        return principal

    def reload_now(self) -> None:
        """Re-read the JWKS if it changed, without waiting for the interval."""
        self._next_check = 0.0
        self._maybe_reload()

    # --- internals ---------------------------------------------------------------

    def _maybe_reload(self) -> None:
        now = time.monotonic()
        if now < self._next_check:
            return
        # Non-blocking: while one thread checks, the others go on with the current keys.
        if not self._reload_lock.acquire(blocking=False):
            return
        try:
            self._next_check = now + self._reload_interval
            try:
                stamp = _file_stamp(self._path)
            except OSError as exc:
                _log.warning("JWKS %s unreadable, keeping current keys: %s", self._path, exc)
                return
            if stamp == self._stamp:
                return
            self._stamp = stamp  # a bad file is reported once, not every second
            try:
                keys = load_verification_keys(self._path, self._algorithms)
            except ConfigError as exc:
                _log.warning("JWKS changed but is unusable, keeping current keys: %s", exc.problem)
                return
            self._keys = keys
            # A key may have been withdrawn: its tokens must not live on in the cache.
            self._cache.clear()
            _log.info("reloaded JWKS %s: %d keys", self._path, len(keys))
        finally:
            self._reload_lock.release()

    def _verify_uncached(self, token: str, now: float) -> tuple[Principal, float]:
        if len(token) > MAX_TOKEN_CHARS or token.count(".") != 2:
            _fail(TOKEN_MALFORMED, "token is not a JWT: need three dot-separated segments")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            _fail(TOKEN_MALFORMED, "token is not a well-formed JWT")
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self._algorithms:
            _fail(
                TOKEN_ALGORITHM_NOT_ALLOWED,
                f"token algorithm {_shown(alg)} is not allowed; "
                f"accepted: {sorted(self._algorithms)}",
            )
        kid = header.get("kid")
        if kid is None:
            _fail(TOKEN_UNKNOWN_KEY, "token header has no kid")
        key = self._keys.get(kid) if isinstance(kid, str) else None
        if key is None:
            _fail(TOKEN_UNKNOWN_KEY, f"token key id {_shown(kid)} is not in the node's JWKS")
        if key.alg != alg:  # RFC 8725 §3.1: the key, not the token, decides the algorithm
            _fail(
                TOKEN_ALGORITHM_NOT_ALLOWED,
                f"token algorithm {_shown(alg)} does not match key {key.kid} ({key.alg})",
            )
        try:
            payload = self._jwt.decode(token, key=key.jwk, algorithms=[key.alg])
        except jwt.InvalidSignatureError:
            _fail(TOKEN_BAD_SIGNATURE, f"token signature does not verify with key {key.kid}")
        except jwt.InvalidAlgorithmError:
            _fail(TOKEN_ALGORITHM_NOT_ALLOWED, f"token algorithm does not match key {key.kid}")
        except jwt.PyJWTError:
            _fail(TOKEN_MALFORMED, "token payload is not a JSON object")
        return self._principal(payload, now)

    def _principal(self, claims: dict[str, Any], now: float) -> tuple[Principal, float]:
        for name in REQUIRED_CLAIMS:
            if claims.get(name) is None:
                _bad_claim(name, "is missing")
        for name in ("exp", "iat", "nbf"):
            if name in claims and not _is_numeric_date(claims[name]):
                _bad_claim(name, "must be a number of seconds since the epoch")

        iss = claims["iss"]
        if not isinstance(iss, str):
            _bad_claim("iss", "must be a string")
        if iss != self._issuer:
            _fail(TOKEN_WRONG_ISSUER, f"token was not issued by {self._issuer!r} (auth.issuer)")
        aud = claims["aud"]
        audiences = [aud] if isinstance(aud, str) else aud
        if not isinstance(audiences, list) or not all(isinstance(a, str) for a in audiences):
            _bad_claim("aud", "must be a string or a list of strings")
        if self._audience not in audiences:
            _fail(
                TOKEN_WRONG_AUDIENCE, f"token is not meant for {self._audience!r} (auth.audience)"
            )

        exp: float = claims["exp"]
        if exp <= now - self._leeway:
            _fail(TOKEN_EXPIRED, f"token expired at {int(exp)}")
        nbf = claims.get("nbf")
        if nbf is not None and nbf > now + self._leeway:
            _fail(TOKEN_NOT_YET_VALID, f"token is not valid before {int(nbf)}")
        if claims["iat"] > now + self._leeway:
            _fail(TOKEN_NOT_YET_VALID, "token is issued in the future; check the issuer's clock")

        sub = claims["sub"]
        if (problem := subject_problem(sub)) is not None:
            _bad_claim("sub", problem)
        role = role_from_claim(claims["role"])
        if role is None:
            _bad_claim("role", f"must be one of {sorted(_ROLES_BY_CLAIM)}")
        org = claims["org"]
        if (problem := organisation_problem(org)) is not None:
            _bad_claim("org", problem)
        region = claims["region"]
        if (problem := region_problem(region)) is not None:
            _bad_claim("region", "must be a valid GB/T 2260 region code")
        jti = claims.get("jti")
        if jti is not None and not isinstance(jti, str):
            _bad_claim("jti", "must be a string")

        principal = Principal(
            subject=sub,
            role=role,
            organisation=org,
            region_code=region,
            expires_at=int(exp),
            token_id=jti,
            issuer=iss,
        )
        return principal, float(exp)
