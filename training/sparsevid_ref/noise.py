"""Bit-exact port of the engine's seeded noise (worker/engine/noise.h).

std::mt19937_64 seeded with `seed`; each pair of 64-bit draws x1, x2 gives
u = ((x >> 11) + 1) * 2^-53 in (0, 1] and, in double precision,
z0 = sqrt(-2 ln u1) cos(2π u2), z1 = sqrt(-2 ln u1) sin(2π u2); values are
filled z0, z1, z0, z1, ... (row-major) and rounded to float32 at the end.
numpy only ships the 32-bit Mersenne Twister, so the 64-bit one is here.
"""
import numpy as np

_N, _M = 312, 156
_MATRIX_A = np.uint64(0xB5026F5AA96619E9)
_UPPER = np.uint64(0xFFFFFFFF80000000)
_LOWER = np.uint64(0x7FFFFFFF)
_MASK64 = (1 << 64) - 1


class MT19937_64:
    def __init__(self, seed):
        mt = [int(seed) & _MASK64]
        for i in range(1, _N):
            prev = mt[-1]
            mt.append((6364136223846793005 * (prev ^ (prev >> 62)) + i) & _MASK64)
        self.mt = np.array(mt, dtype=np.uint64)
        self.index = _N

    def _twist(self):
        mt = self.mt
        one = np.uint64(1)
        # i in [0, N-M): uses mt[i+1] and mt[i+M], all still old.
        y = (mt[0:_N - _M] & _UPPER) | (mt[1:_N - _M + 1] & _LOWER)
        mt[0:_N - _M] = mt[_M:_N] ^ (y >> one) ^ np.where((y & one) == one, _MATRIX_A, np.uint64(0))
        # i in [N-M, N-1): uses old mt[i+1] and new mt[i+M-N].
        y = (mt[_N - _M:_N - 1] & _UPPER) | (mt[_N - _M + 1:_N] & _LOWER)
        mt[_N - _M:_N - 1] = mt[0:_M - 1] ^ (y >> one) ^ np.where((y & one) == one, _MATRIX_A, np.uint64(0))
        # i = N-1: uses new mt[0] and new mt[M-1].
        y = (mt[_N - 1] & _UPPER) | (mt[0] & _LOWER)
        mt[_N - 1] = mt[_M - 1] ^ (y >> one) ^ (_MATRIX_A if (int(y) & 1) else np.uint64(0))
        self.index = 0

    def draw(self, count):
        """Next `count` tempered 64-bit outputs as a uint64 array."""
        out = np.empty(count, dtype=np.uint64)
        pos = 0
        while pos < count:
            if self.index >= _N:
                self._twist()
            take = min(count - pos, _N - self.index)
            y = self.mt[self.index:self.index + take].copy()
            y ^= (y >> np.uint64(29)) & np.uint64(0x5555555555555555)
            y ^= (y << np.uint64(17)) & np.uint64(0x71D67FFFEDA60000)
            y ^= (y << np.uint64(37)) & np.uint64(0xFFF7EEE000000000)
            y ^= y >> np.uint64(43)
            out[pos:pos + take] = y
            pos += take
            self.index += take
        return out


def gaussian_noise(seed, shape):
    """float32 array of `shape`, N(0,1), bit-identical to the C++ engine."""
    count = int(np.prod(shape))
    pairs = (count + 1) // 2
    x = MT19937_64(seed).draw(2 * pairs)
    u = ((x >> np.uint64(11)).astype(np.float64) + 1.0) * (2.0 ** -53)
    u1, u2 = u[0::2], u[1::2]
    r = np.sqrt(-2.0 * np.log(u1))
    z = np.empty(2 * pairs, dtype=np.float64)
    z[0::2] = r * np.cos(2.0 * np.pi * u2)
    z[1::2] = r * np.sin(2.0 * np.pi * u2)
    return z[:count].astype(np.float32).reshape(shape)
