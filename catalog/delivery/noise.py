"""Sticky, keyed noise for L4 answers: the same seed always draws the same number, and without the
deployment's secret (``LODE_NOISE_SECRET``) nobody can tell which.

A draw is HMAC-SHA-256 of the seed under the secret, read as a uniform number in (0, 1) from 53 of
its bits and turned into a standard normal value by the inverse normal CDF. Nothing here samples
from a random source: repeating a question can never average the noise away, and the noise is never
a function of the data alone (the secret is not derivable from data, so an analyst cannot predict it
even for data they know). The floating-point attacks on naive samplers (Mironov 2012) read the low
bits of a noisy value; every noisy value Lode releases is rounded to a grid far coarser than those
bits (whole persons, or the column's precision) before it leaves.
"""

from __future__ import annotations

import hashlib
import hmac
from statistics import NormalDist

_STANDARD = NormalDist()
_SEPARATOR = "\x1f"  # never in a seed part: the parts of a seed cannot run into each other


class Noise:
    def __init__(self, secret: bytes) -> None:
        if len(secret) < 32:
            raise ValueError("the noise secret must hold at least 32 bytes")
        self._key = secret

    def normal(self, *seed: str) -> float:
        """A standard normal value, fixed by ``seed``."""
        digest = hmac.new(self._key, _SEPARATOR.join(seed).encode(), hashlib.sha256).digest()
        bits = int.from_bytes(digest[:8], "big") >> 11  # 53 bits
        return _STANDARD.inv_cdf((bits + 0.5) / 2**53)

    def above(self, floor: float, spread: float, *seed: str) -> float:
        """A threshold at least ``floor``: ``floor + spread·|z|``, fixed by ``seed``."""
        return floor + spread * abs(self.normal(*seed))

    def choice(self, options: int, *seed: str) -> int:
        """One of ``range(options)``, fixed by ``seed``."""
        digest = hmac.new(self._key, _SEPARATOR.join(("choice", *seed)).encode(), hashlib.sha256).digest()
        return int.from_bytes(digest[:8], "big") % options
