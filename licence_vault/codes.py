"""Fast exact checks of the two check-character schemes the vault uses on every licence.

python-stdnum implements both generically (an alphabet searched per
character, separators cleaned first), which cost more than signing a licence.
These are the same algorithms on a precomputed table, for the canonical
compact form only; callers fall back to stdnum for anything else (and for its
error messages). The tests compare both on many codes.

* GB 32100 unified social credit code (USCC): 8 digits, 9 characters of the
  31-character alphabet, a check character over the first 17 (weights 3^i mod 31).
* ISO 7064 MOD 37,36 (GB/T 17710), the check character of GB/T 36904 licence
  identifiers.

Example::

    >>> is_compact_uscc("91420102MA4KXY128F")
    True
    >>> mod_37_36_check("1110000000001701370011142010200004017600000000001001")
    'R'
"""

from __future__ import annotations

__all__ = ["is_compact_uscc", "mod_37_36_check"]

_USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_VALUE = {c: i for i, c in enumerate(_USCC_ALPHABET)}
_USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
_DIGITS = frozenset("0123456789")

_MOD36_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_MOD36_VALUE = {c: i for i, c in enumerate(_MOD36_ALPHABET)}


def is_compact_uscc(code: str) -> bool:
    """True iff ``code`` is a valid USCC already in compact form (no separators, upper case)."""
    if len(code) != 18 or not _DIGITS.issuperset(code[:8]):
        return False
    total = 0
    for char, weight in zip(code, _USCC_WEIGHTS, strict=False):
        value = _USCC_VALUE.get(char)
        if value is None:
            return False
        total += value * weight
    last = code[17]
    return last in _USCC_VALUE and last == _USCC_ALPHABET[(31 - total) % 31]


def mod_37_36_check(body: str) -> str:
    """The ISO 7064 MOD 37,36 check character of ``body`` (characters 0-9 A-Z).

    ValueError for any other character, as stdnum raises.
    """
    check = 18
    try:
        for char in body:
            check = (((check or 36) * 2) % 37 + _MOD36_VALUE[char]) % 36
    except KeyError:
        raise ValueError(f"{body!r} holds a character outside 0-9 A-Z") from None
    return _MOD36_ALPHABET[(1 - ((check or 36) * 2) % 37) % 36]
