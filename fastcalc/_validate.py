"""Shared argument checks: dtype rules, shapes, ``out=``, memory layouts.

Public functions validate here once and hand kernels clean arrays:
contiguous, native byte order, one floating dtype.  Kernels never re-check.
"""

from __future__ import annotations

import os

import numpy as np

__all__ = ["MEMORY_BYTES", "Elementwise", "as_array", "check_out", "common_dtype", "compute_dtype",
           "elementwise", "elementwise_fast", "finish", "is_dask_array", "no_out_with_dask",
           "on_dask", "refuse_grad_tensor", "same_buffer"]

def _memory_bytes() -> int:
    """This machine's memory: the most one array asked for can take."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return np.iinfo(np.intp).max


# Results larger than this are a ValueError naming the argument that asked
# for them, before anything is allocated (numpy would raise MemoryError).
MEMORY_BYTES = _memory_bytes()

_FLOAT16 = np.dtype(np.float16)
_FLOAT32 = np.dtype(np.float32)
_FLOAT64 = np.dtype(np.float64)


def is_dask_array(x) -> bool:
    """Whether ``x`` is a ``dask.array.Array``, known without importing dask.

    Other dask collections (an xarray object holding dask arrays, a dask
    DataFrame) are converted with ``np.asarray`` as before.
    """
    return (type(x) is not np.ndarray and hasattr(x, "__dask_graph__")
            and type(x).__module__.startswith("dask."))


def as_array(value, name: str) -> np.ndarray:
    """``value`` as a plain ndarray, as scipy converts its inputs (a subclass
    such as ``np.matrix`` is read as an ndarray).

    For the functions that combine elements (convolutions, the RNN, the
    fits, gradient descent): a masked array is a TypeError, since its masked
    values would be computed as if valid, as is a torch tensor that requires
    grad (fastcalc computes gradients with its ``*_backward`` functions); a
    ragged sequence is a ValueError naming the argument.
    """
    if isinstance(value, np.ma.MaskedArray):
        raise TypeError(f"{name} is a masked array, whose masked values this function "
                        f"would compute as if valid: pass {name}.filled(value) to compute "
                        "every element with a value of your choice in the masked ones")
    refuse_grad_tensor(value, name)
    try:
        return np.asarray(value)
    except ValueError as error:
        raise ValueError(f"{name} must be an array of numbers: {error}") from None


def refuse_grad_tensor(value, name: str) -> None:
    """A torch tensor that requires grad is a TypeError (torch's own error speaks of .numpy())."""
    if getattr(value, "requires_grad", False) is True and type(value).__module__.startswith(
            "torch"):
        raise TypeError(f"{name} is a torch tensor that requires grad: pass {name}.detach() "
                        "(fastcalc computes gradients with its *_backward functions)")


def on_dask(name: str):
    """:mod:`fastcalc.dask`'s function ``name``, where the public functions hand a dask
    array (importing ``fastcalc.dask``, hence dask, only then)."""
    from fastcalc import dask as fastcalc_dask

    return getattr(fastcalc_dask, name)


def no_out_with_dask(out, name: str) -> None:
    """A dask array ``name`` takes no ``out=``: dask arrays are immutable."""
    if out is not None:
        raise TypeError(f"out cannot be given with a dask array {name}: dask arrays are "
                        "immutable (write the result with dask.array.store)")


def compute_dtype(dtype: np.dtype, name: str) -> tuple[np.dtype, np.dtype]:
    """``(computed in, returned as)`` for an input of ``dtype``.

    float32 and float64 are kept; float16 is computed in float32 and returned
    as float16; bool and integers give float64.  Anything else is a TypeError
    naming the argument.
    """
    kind = dtype.kind
    if kind == "f":
        native = dtype.newbyteorder("=")
        if native in (_FLOAT32, _FLOAT64):
            return native, native
        if native == _FLOAT16:
            return _FLOAT32, _FLOAT16
        raise TypeError(
            f"{name} has dtype {dtype}, which fastcalc does not compute in; "
            "convert it to float64 or float32"
        )
    if kind in "biu":
        return _FLOAT64, _FLOAT64
    raise TypeError(
        f"{name} must be a real floating, integer or bool array, got dtype {dtype}"
    )


def common_dtype(arrays: dict[str, np.ndarray], what: str) -> tuple[np.dtype, np.dtype]:
    """``(computed in, returned as)`` for named arrays used together: numpy's promotion of all.

    A complex array is a TypeError naming it (fastcalc computes real ``what``
    only), as is any other dtype :func:`compute_dtype` rejects.
    """
    for name, array in arrays.items():
        if array.dtype.kind == "c":
            raise TypeError(f"{name} is complex ({array.dtype}); fastcalc computes real "
                            f"{what} only")
        compute_dtype(array.dtype, name)
    return compute_dtype(np.result_type(*arrays.values()), ", ".join(arrays))


# What :func:`elementwise` returns: ``(source, target, result, copy_back,
# scalar)``.  ``source`` and ``target`` are 1-D, contiguous, native, of the
# compute dtype; ``target is source`` means in place.  After the kernel ran,
# :func:`finish` copies ``target`` into ``result`` if it is a separate buffer
# (``copy_back`` is then the order, "C" or "F", in which the kernel saw the
# elements).  A plain tuple: this is on every call's path, and building one
# costs a fraction of a NamedTuple.
Elementwise = tuple[np.ndarray, np.ndarray, np.ndarray, "str | None", bool]


def finish(operands: Elementwise):
    """What an elementwise public function returns, once its kernel ran."""
    _, target, result, copy_back, scalar = operands
    if copy_back is not None:
        buffer = result if type(result) is np.ndarray else result.view(np.ndarray)
        np.copyto(buffer, target.reshape(result.shape, order=copy_back), casting="unsafe")
    return result[()] if scalar else result


def same_buffer(a: np.ndarray, b: np.ndarray) -> bool:
    """True if ``a`` and ``b`` view exactly the same elements in the same order."""
    return (
        a.__array_interface__["data"][0] == b.__array_interface__["data"][0]
        and a.strides == b.strides
    )


def elementwise_fast(x, out) -> Elementwise | None:
    """The operands of the common case, checked fast; None if :func:`elementwise` must decide.

    The common case is the hot path of small calls: ``x`` a 1-D C-contiguous
    float32 or float64 ndarray, ``out`` None, ``x`` itself or a separate plain
    ndarray like it.  It needs no conversion and no copy.
    """
    if type(x) is not np.ndarray:
        return None
    dtype = x.dtype
    if (dtype is _FLOAT64 or dtype is _FLOAT32) and x.ndim == 1 and x.flags.c_contiguous:
        if out is None:
            result = np.empty_like(x)
            return (x, result, result, None, False)
        if type(out) is np.ndarray and out.dtype is dtype and out.shape == x.shape:
            out_flags = out.flags
            if out_flags.c_contiguous and out_flags.writeable:
                if out is x:
                    return (x, x, out, None, False)
                if not np.may_share_memory(x, out):
                    return (x, out, out, None, False)
    return None


def elementwise(x, out, name: str = "x") -> Elementwise:
    """Validate ``x`` and ``out`` of an elementwise (same-shape) operation."""
    operands = elementwise_fast(x, out)
    if operands is not None:
        return operands
    if type(x) is not np.ndarray:
        refuse_grad_tensor(x, name)
    array = x if type(x) is np.ndarray else np.asarray(x)
    dtype = array.dtype
    compute, result_dtype = compute_dtype(dtype, name)
    flags = array.flags

    # An elementwise kernel can run over any contiguous buffer in memory order:
    # Fortran-ordered input needs no copy.
    order = "F" if flags.f_contiguous and not flags.c_contiguous else "C"
    source = np.asarray(array, dtype=compute, order=order).reshape(-1, order=order)
    if out is None:
        result = np.empty(array.shape, dtype=result_dtype, order=order)
        if result_dtype == compute:
            return (source, result.reshape(-1, order=order), result, None, array.ndim == 0)
        return (source, np.empty_like(source), result, order, array.ndim == 0)

    check_out(out, array.shape, result_dtype)
    # An ndarray subclass (np.memmap, np.ma.MaskedArray, np.matrix, ...) is
    # written through a plain ndarray view of its buffer and returned itself,
    # as numpy's ufuncs do: kernels see plain arrays only (Numba refuses
    # some subclasses, a matrix cannot be flattened to 1-D).
    out_buffer = out if type(out) is np.ndarray else out.view(np.ndarray)
    direct = (
        out.dtype == compute  # also excludes non-native byte order and float16
        and (out.flags.c_contiguous if order == "C" else out.flags.f_contiguous)
    )
    if not direct:
        if np.may_share_memory(source, out_buffer):
            source = source.copy()
        return (source, np.empty_like(source), out, order, False)
    target = out_buffer.reshape(-1, order=order)
    if np.may_share_memory(source, target):
        if same_buffer(source, target):
            return (target, target, out, None, False)
        source = source.copy()
    return (source, target, out, None, False)


def check_out(out, shape: tuple[int, ...], dtype: np.dtype) -> None:
    """``out`` must be a writeable ndarray of ``shape`` and ``dtype`` (any byte order)."""
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out must be a numpy.ndarray, got {type(out).__name__}")
    if out.shape != shape:
        raise ValueError(f"out has shape {out.shape}, expected {shape}")
    if out.dtype.newbyteorder("=") != dtype:
        raise ValueError(f"out has dtype {out.dtype}, expected {dtype}")
    if not out.flags.writeable:
        raise ValueError("out is read-only")
