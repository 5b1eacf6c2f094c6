"""Deterministic per-event random draws.

The draw of an event is a pure function of ``(event key, label name, seed)``: replaying
an event reproduces its priority exactly, on any machine, and the label's *name* (a
BLAKE2b-64 hash of its UTF-8 bytes, :func:`name_salt`) salts it -- never the order in
which a reservoir first saw the label -- so the sample of a set of events does not depend
on partitioning, batching, registration order or restart points. ``splitmix64``'s
finaliser is the mixing function (a bijection of 64-bit integers with full avalanche).

>>> from sampler.hashing import draw_uniform_py
>>> draw_uniform_py(42, "login_error", 7) == draw_uniform_py(42, "login_error", 7)
True
>>> 0.0 < draw_uniform_py(42, "é", 7) < 1.0
True
"""

from __future__ import annotations

import hashlib

import numpy as np
from numba import njit

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S11 = np.uint64(11)
_INV53 = 1.0 / 9007199254740992.0  # 2**-53
MASK64 = (1 << 64) - 1


@njit(cache=True, inline="always")
def mix64(z):
    """splitmix64 finaliser on a uint64 (wrapping arithmetic)."""
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


def name_salt(name: str, seed: int) -> int:
    """Per-(label name, seed) salt; computed once per label, not per event."""
    h = int.from_bytes(hashlib.blake2b(name.encode("utf-8"), digest_size=8).digest(), "little")
    return mix64_py((seed & MASK64) ^ h)


@njit(cache=True, inline="always")
def draw_uniform(event_key, salt):
    """A uniform double in the open interval (0, 1) from a 64-bit key and a salt."""
    h = mix64(np.uint64(event_key) + np.uint64(salt))
    return (np.float64(np.int64(h >> _S11)) + 0.5) * _INV53


# ---- pure-Python twins (reference implementation, used by tests and docs) ----


def mix64_py(z: int) -> int:
    z &= MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def draw_uniform_py(event_key: int, label: str, seed: int) -> float:
    h = mix64_py((event_key + name_salt(label, seed)) & MASK64)
    return ((h >> 11) + 0.5) * 2.0**-53


def event_keys_from_strings(ids: list[str] | list[bytes]) -> np.ndarray:
    """64-bit event keys from string ids (BLAKE2b-64), for callers without integer keys."""
    import hashlib

    out = np.empty(len(ids), dtype=np.uint64)
    for i, s in enumerate(ids):
        b = s.encode() if isinstance(s, str) else s
        out[i] = int.from_bytes(hashlib.blake2b(b, digest_size=8).digest(), "little")
    return out
