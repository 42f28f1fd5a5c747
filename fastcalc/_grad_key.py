"""What Numba freezes when it compiles a user's function: a key equal for equal functions.

Two functions of the same contents (the same lambda written again in a loop, a
closure factory called again with equal values, a function unpickled on a
worker) compile to the same code.  :mod:`fastcalc.optim` keys its choice of
backend by it and the Numba backend its cache of compiled grads; this module
imports no Numba, so ``"auto"`` can ask without loading it.
"""

import functools
import types
import weakref

import numpy as np

__all__ = ["grad_key"]


class _Identity:
    """A key part equal only to itself: an object compared by identity (and kept alive)."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value

    def __eq__(self, other):
        return isinstance(other, _Identity) and other.value is self.value

    def __hash__(self):
        return id(self.value)


def _value_key(value, depth=0):
    """``value`` as Numba compiles it: a function by its contents, floats by their bits.

    The type is part of the key (Numba types 2 and 2.0 apart) and floats go by
    their hex form (0.0 and -0.0 give different code, NaN equals NaN);
    anything unhashable or mutable (an array, a list) goes by identity.
    """
    if isinstance(value, types.FunctionType) and depth < 4:
        return _function_key(value, depth + 1)
    if isinstance(value, types.CodeType):
        return _code_key(value, depth)
    if isinstance(value, (float, complex, np.floating, np.complexfloating)):
        return type(value), complex(value).real.hex(), complex(value).imag.hex()
    if isinstance(value, tuple):
        return tuple, tuple(_value_key(item, depth) for item in value)
    if isinstance(value, (int, str, bytes, bool, type(None), np.integer, np.bool_)):
        return type(value), value
    return _Identity(value)


def _code_key(code, depth):
    """A code object by what it computes: its names and line numbers left out."""
    return (code.co_code, code.co_argcount, code.co_posonlyargcount, code.co_kwonlyargcount,
            code.co_flags, code.co_names, code.co_varnames, code.co_freevars, code.co_cellvars,
            getattr(code, "co_exceptiontable", b""),
            tuple(_value_key(constant, depth) for constant in code.co_consts))


def _cell_is_full(cell) -> bool:
    try:
        cell.cell_contents  # noqa: B018 (the attribute raises for an empty cell)
    except ValueError:  # a name bound later
        return False
    return True


def _cell_key(cell, depth):
    return _value_key(cell.cell_contents, depth) if _cell_is_full(cell) else _Identity(cell)


@functools.lru_cache(maxsize=256)
def _names(code):
    """The global and attribute names ``code`` and the code nested in it use."""
    names = dict.fromkeys(code.co_names)
    for constant in code.co_consts:
        if isinstance(constant, types.CodeType):
            names.update(dict.fromkeys(_names(constant)))
    return tuple(names)


def _function_key(function, depth=0):
    """What Numba freezes when it compiles ``function``: two equal keys compile the same.

    Its code, constants, defaults and the values in its closure cells, and
    the objects (by identity) of the globals it names.
    """
    namespace = function.__globals__
    cells = tuple(_cell_key(cell, depth) for cell in function.__closure__ or ())
    globals_used = tuple((name, _Identity(namespace[name]))
                         for name in _names(function.__code__) if name in namespace)
    return (_code_key(function.__code__, depth), cells, globals_used,
            _value_key(function.__defaults__, depth),
            _value_key(tuple(sorted((function.__kwdefaults__ or {}).items())), depth))


# Per function object: the objects its key was computed from, and the key.
_remembered: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def grad_key(grad):
    """What compiling ``grad`` depends on (:func:`_function_key`): equal keys compile the same.

    Remembered per function object while what it reads (its code, defaults,
    closure cell values and referenced globals) are the same objects:
    computing the key costs several microseconds, which a small call should
    not pay each time.  Anything but a plain Python function is keyed by
    identity.
    """
    if not isinstance(grad, types.FunctionType):
        return _Identity(grad)
    namespace = grad.__globals__
    inputs = (grad.__code__, grad.__defaults__, grad.__kwdefaults__,
              *(cell.cell_contents if _cell_is_full(cell) else cell
                for cell in grad.__closure__ or ()),
              *(namespace.get(name) for name in _names(grad.__code__)))
    try:
        remembered, key = _remembered[grad]
        if len(remembered) == len(inputs) and all(
                a is b for a, b in zip(remembered, inputs, strict=True)):
            return key
    except (KeyError, TypeError):
        pass
    key = _function_key(grad)
    try:
        _remembered[grad] = (inputs, key)
    except TypeError:  # not weak-referenceable
        pass
    return key
