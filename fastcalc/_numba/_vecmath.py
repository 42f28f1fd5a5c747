"""Vectorizable elementary functions for Numba kernels.

Numba lowers ``np.exp`` to a scalar libm call, which stops LLVM from
vectorizing the loop around it.  The functions here use only arithmetic,
comparisons and bit casts, so a loop that calls them compiles to SIMD code
(ymm/zmm on the host CPU).  They are inlined into the calling kernel.

The exponential uses the classic scheme: ``exp(t) = 2**n * exp(r)`` with
``n = round(t / ln 2)`` found by the "shifter" trick (adding 1.5 * 2**52 puts
``n`` in the low mantissa bits, so no float-to-int conversion is needed),
a two-constant Cody-Waite reduction ``r = t - n ln2`` (|r| <= ln2/2), and a
polynomial ``1 + r + r**2 q(r)`` fitted to exp in relative error on that
interval (least squares on Chebyshev nodes in 50-digit arithmetic): degree 10
for float64 (3.5e-16 max relative error), degree 6 for float32 (3.6e-9).  ``2**n`` is
built from exponent bits in two halves so that results in the subnormal
range underflow gradually instead of being flushed to zero.
"""

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

__all__ = ["FASTMATH", "exp_nonpositive", "tanh"]


@intrinsic
def _float_bits(typingctx, value):
    """The IEEE bits of a float32/float64 as a signed int64 (sign-extended)."""
    if value not in (types.float32, types.float64):
        return None

    def codegen(context, builder, signature, args):
        bits = builder.bitcast(args[0], ir.IntType(value.bitwidth))
        return builder.sext(bits, ir.IntType(64)) if value.bitwidth < 64 else bits

    return types.int64(value), codegen


@intrinsic
def _bits_float(typingctx, bits, like):
    """The float of the type of ``like`` whose IEEE bits are the low bits of ``bits``."""
    if not isinstance(bits, types.Integer) or like not in (types.float32, types.float64):
        return None

    def codegen(context, builder, signature, args):
        width = like.bitwidth
        value = args[0]
        if bits.bitwidth > width:
            value = builder.trunc(value, ir.IntType(width))
        elif bits.bitwidth < width:
            value = builder.sext(value, ir.IntType(width))
        return builder.bitcast(value, context.get_value_type(like))

    return like(bits, like), codegen


# "contract" lets LLVM fuse a * b + c into one FMA (one rounding instead of
# two); it changes no other IEEE behaviour and no floating-point state.
FASTMATH = {"contract"}
_JIT = dict(nogil=True, cache=True, error_model="numpy", inline="always", fastmath=FASTMATH)

# float64 constants.  LN2_HI has its low 11 bits zero, so n * LN2_HI is exact.
_SHIFT64 = 6755399441055744.0  # 1.5 * 2**52
_SHIFT64_BITS = np.float64(_SHIFT64).view(np.int64).item()
_INV_LN2_64 = 1.4426950408889634
_LN2_HI_64 = 6.93147180369123816490e-01
_LN2_LO_64 = 1.90821492927058770002e-10
_P64 = (1.0, 1.0, 0.49999999999997080899, 0.16666666666610014487,
        0.041666666668962515442, 0.0083333333714697969162, 0.0013888888333669240662,
        0.0001984118450896431152, 0.000024802096727785499005, 2.7635270528680241402e-6,
        2.7424198643926820825e-7)
_MIN_ARG_64 = -1400.0  # exp(-1400) rounds to 0; n >= -2044 keeps both halves of 2**n normal

# float32 constants.
_SHIFT32 = np.float32(12582912.0)  # 1.5 * 2**23
_SHIFT32_BITS = np.float32(_SHIFT32).view(np.int32).item()
_INV_LN2_32 = np.float32(1.44269504)
_LN2_HI_32 = np.float32(0.693145751953125)
_LN2_LO_32 = np.float32(1.428606765330187e-06)
_P32 = tuple(np.float32(c) for c in (
    1.0, 1.0, 0.49999988595112801618, 0.1666651845998037474, 0.041669533109223250133,
    0.0083689163413751266887, 0.0013751407895822138688))
_ONE32 = np.float32(1.0)
_MIN_ARG_32 = np.float32(-150.0)  # likewise: rounds to 0, n >= -252


@njit(**_JIT)
def _exp_nonpositive_f64(t):
    # max() keeps NaN (it fails the comparison), which then flows through as NaN.
    clamped = max(t, _MIN_ARG_64)
    shifted = clamped * _INV_LN2_64 + _SHIFT64
    nf = shifted - _SHIFT64
    r = (clamped - nf * _LN2_HI_64) - nf * _LN2_LO_64
    p = 1.0 + r * (1.0 + r * (_P64[2] + r * (_P64[3] + r * (_P64[4] + r * (_P64[5] + r * (
        _P64[6] + r * (_P64[7] + r * (_P64[8] + r * (_P64[9] + r * _P64[10])))))))))
    n = _float_bits(shifted) - _SHIFT64_BITS
    half = n >> 1
    scale_a = _bits_float((half + 1023) << 52, t)
    scale_b = _bits_float((n - half + 1023) << 52, t)
    return p * scale_a * scale_b


@njit(**_JIT)
def _exp_nonpositive_f32(t):
    clamped = max(t, _MIN_ARG_32)
    shifted = clamped * _INV_LN2_32 + _SHIFT32
    nf = shifted - _SHIFT32
    r = (clamped - nf * _LN2_HI_32) - nf * _LN2_LO_32
    p = _ONE32 + r * (_ONE32 + r * (_P32[2] + r * (_P32[3] + r * (_P32[4] + r * (
        _P32[5] + r * _P32[6])))))
    n = _float_bits(shifted) - _SHIFT32_BITS
    half = n >> 1
    scale_a = _bits_float((half + 127) << 23, t)
    scale_b = _bits_float((n - half + 127) << 23, t)
    return p * scale_a * scale_b


@njit(**_JIT)
def exp_nonpositive(t):
    """exp(t) for t <= 0 (or NaN), in the precision of ``t``; vectorizable."""
    if isinstance(t, np.float32):  # resolved at compile time per dtype
        return _exp_nonpositive_f32(t)
    return _exp_nonpositive_f64(t)


# tanh(v) = -m / (2 + m) for v >= 0, with m = expm1(-2 v) from the same
# reduction as exp: expm1(t) = 2**n (p(r) - 1) + (2**n - 1).  p - 1 is a
# polynomial r + r**2 q(r) fitted to expm1 in *relative* error (the same
# method; degree 11 for float64: 2e-17, degree 6 for float32: 1.4e-8), so
# for |t| < ln2 / 2 (n = 0, r = t) tanh keeps full relative accuracy near 0,
# where (1 - e) / (1 + e) with e = exp(-2 v) would lose it.  Below the clamp
# expm1 is -1 to working precision, so 2**n stays a normal number.
_Q64 = (0.50000000000000057134, 0.16666666666666581365, 0.041666666666569400127,
        0.0083333333333940971649, 0.0013888888934158971891, 0.00019841269711703169671,
        0.000024801501980650069000, 0.0000027557410967636450028, 2.7627404606753659245e-7,
        2.5053847250655854011e-8)
_Q32 = tuple(np.float32(c) for c in (
    0.49999998041368250707, 0.16666538676522579667, 0.041667221420453641195,
    0.0083671814253952113974, 0.0013882385488359181840))
_EXPM1_MIN_64 = -40.0
_EXPM1_MIN_32 = np.float32(-20.0)
_TWO32 = np.float32(2.0)


@njit(**_JIT)
def _tanh_f64(v):
    t = max(-2.0 * abs(v), _EXPM1_MIN_64)
    shifted = t * _INV_LN2_64 + _SHIFT64
    nf = shifted - _SHIFT64
    r = (t - nf * _LN2_HI_64) - nf * _LN2_LO_64
    pm1 = r + r * r * (_Q64[0] + r * (_Q64[1] + r * (_Q64[2] + r * (_Q64[3] + r * (
        _Q64[4] + r * (_Q64[5] + r * (_Q64[6] + r * (_Q64[7] + r * (_Q64[8] + r * _Q64[9])))))))))
    scale = _bits_float((_float_bits(shifted) - _SHIFT64_BITS + 1023) << 52, v)
    m = pm1 * scale + (scale - 1.0)
    return np.copysign(-m / (2.0 + m), v)


@njit(**_JIT)
def _tanh_f32(v):
    t = max(np.float32(-2.0) * abs(v), _EXPM1_MIN_32)
    shifted = t * _INV_LN2_32 + _SHIFT32
    nf = shifted - _SHIFT32
    r = (t - nf * _LN2_HI_32) - nf * _LN2_LO_32
    pm1 = r + r * r * (_Q32[0] + r * (_Q32[1] + r * (_Q32[2] + r * (_Q32[3] + r * _Q32[4]))))
    scale = _bits_float((_float_bits(shifted) - _SHIFT32_BITS + 127) << 23, v)
    m = pm1 * scale + (scale - _ONE32)
    return np.copysign(-m / (_TWO32 + m), v)


@njit(**_JIT)
def tanh(v):
    """tanh(v) in the precision of ``v``; vectorizable, NaN in gives NaN."""
    if isinstance(v, np.float32):  # resolved at compile time per dtype
        return _tanh_f32(v)
    return _tanh_f64(v)
