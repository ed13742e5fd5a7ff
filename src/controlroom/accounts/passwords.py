"""Password hashing: Argon2id (argon2-cffi), with RFC 9106's second recommended profile (3 passes
over 64 MiB, 4 lanes). A stored hash carries its own parameters, so a hash made with older
parameters still verifies and is replaced at the next successful login."""

from __future__ import annotations

from typing import Any

MIN_LENGTH = 12
MAX_LENGTH = 1024  # Argon2 takes any length; a cap keeps one login from costing a megabyte of hashing

_hasher: Any = None


def _get() -> Any:
    global _hasher
    if _hasher is None:
        from argon2 import PasswordHasher
        from argon2.profiles import RFC_9106_LOW_MEMORY

        _hasher = PasswordHasher.from_parameters(RFC_9106_LOW_MEMORY)
    return _hasher


def use_hasher(hasher: Any) -> None:
    """Replace the hasher new hashes are made with (tests use a cheap one; verification always
    follows the parameters stored in the hash)."""
    global _hasher
    _hasher = hasher


def check_strength(password: str) -> None:
    """Raises ValueError saying what is wrong with a new password."""
    if len(password) < MIN_LENGTH:
        raise ValueError(f"a password needs at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        raise ValueError(f"a password has at most {MAX_LENGTH} characters")


def hash_password(password: str) -> str:
    return str(_get().hash(password))


def verify(stored: str, password: str) -> bool:
    from argon2.exceptions import InvalidHashError, VerificationError

    try:
        return bool(_get().verify(stored, password[:MAX_LENGTH]))
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(stored: str) -> bool:
    return bool(_get().check_needs_rehash(stored))


# Verified when a login names no such user, so that answer takes as long as a wrong password.
_DUMMY: str | None = None


def waste_time_like_a_verify(password: str) -> None:
    global _DUMMY
    if _DUMMY is None:
        _DUMMY = hash_password("not a password anyone has")
    verify(_DUMMY, password)
