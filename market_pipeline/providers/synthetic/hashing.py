"""Counter-based hashing (splitmix64): the randomness of synthetic bars, reproducible anywhere."""

from __future__ import annotations

import math
import zlib

import numpy as np

_MASK64 = (1 << 64) - 1
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_SQRT6 = math.sqrt(6.0)
_SHIFT27, _SHIFT30, _SHIFT31, _SHIFT32 = (np.uint64(v) for v in (27, 30, 31, 32))
_LOW32 = np.uint64(0xFFFFFFFF)
_LOW16 = np.uint64(0xFFFF)
_SHIFT_16X4 = np.array([0, 16, 32, 48], dtype=np.uint64)
_SHIFT16, _SHIFT20 = np.uint64(16), np.uint64(20)
_ONE_BITS = np.uint64(0x3FF0000000000000)  # 1.0 as IEEE 754 bits


def hash_key(*parts: object) -> int:
    """A 64-bit key from a stable hash of the parts (crc32, never Python's ``hash()``)."""
    text = "\x1f".join(str(p) for p in parts).encode()
    low = zlib.crc32(text)
    high = zlib.crc32(text[::-1] + b"\x00")
    return _splitmix_scalar((high << 32) | low)


def _splitmix_scalar(value: int) -> int:
    value = (value + 0x9E3779B97F4A7C15) & _MASK64
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK64
    return value ^ (value >> 31)


def unit_scalar(key: int) -> float:
    """Uniform in (0, 1) from a 64-bit key."""
    return ((key >> 11) + 0.5) * 2.0**-53


def _hash64(key: int | np.ndarray, counter: np.ndarray) -> np.ndarray:
    """splitmix64 of (key, counter): independent-looking 64-bit values, one per counter.
    ``key`` is an int or a uint64 array broadcasting against ``counter``."""
    x = counter.astype(np.uint64)
    x *= _GOLDEN
    x += key if isinstance(key, np.ndarray) else np.uint64(key & _MASK64)
    x ^= x >> _SHIFT30
    x *= _MIX1
    x ^= x >> _SHIFT27
    x *= _MIX2
    x ^= x >> _SHIFT31
    return x


def unit_normal(key: int | np.ndarray, counter: np.ndarray) -> np.ndarray:
    """Zero-mean, unit-variance noise per counter: the sum of two independent 32-bit uniforms,
    standardised (triangular: cheap, and the sum over many scales is close to Gaussian)."""
    x = _hash64(key, counter)
    high = _unit_from_bits(x >> _SHIFT32)
    high += _unit_from_bits(x & _LOW32)
    high -= 1.0
    high *= _SQRT6
    return high


def uniform16x4(key: int, counter: np.ndarray) -> np.ndarray:
    """Four independent uniforms in [0, 1) per counter (16 bits each), shape (4, n)."""
    x = _hash64(key, counter)[None, :] >> _SHIFT_16X4[:, None]
    x &= _LOW16
    x <<= _SHIFT16
    return _unit_from_bits(x)


def _unit_from_bits(bits: np.ndarray) -> np.ndarray:
    """Uniform in [0, 1) from integers below 2**32 taken as 32-bit fractions (``bits`` is
    overwritten).

    Writes them into the mantissa of floats in [1, 2) and subtracts 1: integer operations that
    vectorise, unlike numpy's uint64-to-float conversion.
    """
    bits <<= _SHIFT20
    bits |= _ONE_BITS
    floats = bits.view(np.float64)
    floats -= 1.0
    return floats
