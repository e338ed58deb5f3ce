"""The one place that owns numba's compile options, and the flush-to-zero guard.

Every kernel in :mod:`amcheck.kernels` is compiled through :func:`jit`, so the options are decided
once: ``parallel=True`` (``prange`` over the outermost axis), ``nogil=True`` (a kernel never blocks
the transfer thread of the checkpoint engine), ``cache=True`` (compiled code is kept next to the
source, keyed by the argument types *and* the factory's closure constants, so kernels of two
factories never share a cache entry), ``fastmath=False`` (the adjoint tests need reproducible
round-off) and ``error_model="numpy"`` (no zero-division checks in the hot loop).

Two more intrinsics give kernels what ``fastmath`` would otherwise be needed for, without its
licence to reorder: :func:`fma` is ``a * b + c`` with one rounding (``llvm.fma``; vectorised to
``vfmadd`` on x86-64), and :func:`prefetch` asks the cache for a line a kernel will read soon
(``llvm.prefetch``, a hint that never faults). Both are deterministic: the same kernel gives the same
bits on every call, which the bitwise checkpointed == store-all tests rely on.

Denormals
---------
Late in a wave simulation most of the grid holds tiny values that decay into the subnormal range,
where x86 arithmetic is 10-100x slower. numba has no flush-to-zero switch, so each kernel sets the
FTZ and DAZ bits of the MXCSR register itself, at the start of every ``prange`` iteration (on
whichever worker thread runs it), and restores the previous value at its end: two instructions per
row or plane, and no flag leaks into the caller's thread or into numpy. :func:`ftz_on` and
:func:`ftz_restore` are numba intrinsics for this; on other architectures they do nothing.
"""

from __future__ import annotations

import platform
from collections.abc import Callable
from types import FunctionType
from typing import Any, TypeVar, overload

import numba
from llvmlite import ir  # type: ignore[import-untyped]
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

__all__ = ["HAS_FTZ", "fma", "ftz_on", "ftz_restore", "jit", "prefetch", "serial_build"]

F = TypeVar("F", bound=Callable[..., Any])

#: Whether the FTZ/DAZ guard does anything on this machine (x86-64 only).
HAS_FTZ = platform.machine().lower() in ("x86_64", "amd64")

#: MXCSR bits: FTZ (flush results to zero, bit 15) | DAZ (treat subnormal inputs as zero, bit 6).
_FTZ_DAZ = 0x8040


@overload
def jit(func: F, *, parallel: bool = True, inline: bool = False, cache: bool = True) -> F: ...


@overload
def jit(func: None = None, *, parallel: bool = True, inline: bool = False, cache: bool = True
        ) -> Callable[[F], F]: ...


def jit(func: F | None = None, *, parallel: bool = True, inline: bool = False,
        cache: bool = True) -> Any:
    """Compile ``func`` with amcheck's kernel options (see the module docstring).

    Parameters
    ----------
    func
        The Python function to compile; may be a closure made by a kernel factory.
    parallel
        ``True`` for kernels with a ``prange`` loop; ``False`` for small serial helpers, which
        still release the GIL.
    inline
        Inline the function into its callers at numba IR level (``inline="always"``). Small
        helpers called per grid point must be inlined: a call per point blocks vectorisation
        (measured 10x slower).
    cache
        Keep the compiled code on disk (default). Not for a function whose closure holds other
        compiled functions: numba keys cache entries on the pickled closure, and a dispatcher
        pickles with a per-process id, so every process would add an entry and none would hit.
    """
    options: dict[str, Any] = {
        "parallel": parallel, "nogil": True, "cache": cache, "fastmath": False,
        "error_model": "numpy"
    }
    if inline:
        options["inline"] = "always"
    if func is None:
        return numba.njit(**options)
    return numba.njit(**options)(func)


def serial_build(kernel: Any) -> Any:
    """The same kernel compiled without ``parallel`` (``prange`` runs as ``range``), cached apart.

    numba keys its on-disk cache on the function's code and closure and the argument types, not
    on the compile options, so compiling ``kernel.py_func`` again with ``parallel=False`` would
    share entries with the parallel build: whichever compiled first in any process is what both
    load afterwards (a parallel kernel that runs serial, or a serial loop that launches parallel
    regions and so takes the GIL every step). The serial build is therefore a twin function
    whose qualified name ends in ``_serial``, which gives it a cache file of its own.
    """
    func = kernel.py_func
    code = func.__code__.replace(co_name=f"{func.__name__}_serial",
                                 co_qualname=f"{func.__qualname__}_serial")
    twin = FunctionType(code, func.__globals__, code.co_name, func.__defaults__,
                        func.__closure__)
    twin.__qualname__ = code.co_qualname
    twin.__module__ = func.__module__
    twin.__kwdefaults__ = func.__kwdefaults__
    return jit(twin, parallel=False)


def _mxcsr_intrinsics(builder: Any) -> tuple[Any, Any]:
    i8p = ir.IntType(8).as_pointer()
    fnty = ir.FunctionType(ir.VoidType(), [i8p])
    stmxcsr = cgutils.get_or_insert_function(  # type: ignore[no-untyped-call]
        builder.module, fnty, "llvm.x86.sse.stmxcsr")
    ldmxcsr = cgutils.get_or_insert_function(  # type: ignore[no-untyped-call]
        builder.module, fnty, "llvm.x86.sse.ldmxcsr")
    return stmxcsr, ldmxcsr


@intrinsic
def _ftz_on(typingctx: Any) -> Any:
    """Set FTZ and DAZ on the calling thread; return the previous MXCSR (0 where unsupported)."""
    sig = types.uint32()

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        i32 = ir.IntType(32)
        if not HAS_FTZ:
            return ir.Constant(i32, 0)
        stmxcsr, ldmxcsr = _mxcsr_intrinsics(builder)
        slot = cgutils.alloca_once(builder, i32)  # type: ignore[no-untyped-call]
        ptr = builder.bitcast(slot, ir.IntType(8).as_pointer())
        builder.call(stmxcsr, [ptr])
        old = builder.load(slot)
        builder.store(builder.or_(old, ir.Constant(i32, _FTZ_DAZ)), slot)
        builder.call(ldmxcsr, [ptr])
        return old

    return sig, codegen


@intrinsic
def _ftz_restore(typingctx: Any, old: Any) -> Any:
    """Restore the MXCSR value that :func:`ftz_on` returned."""
    sig = types.void(types.uint32)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        if HAS_FTZ:
            _, ldmxcsr = _mxcsr_intrinsics(builder)
            slot = cgutils.alloca_once(  # type: ignore[no-untyped-call]
                builder, ir.IntType(32))
            builder.store(args[0], slot)
            builder.call(ldmxcsr, [builder.bitcast(slot, ir.IntType(8).as_pointer())])
        return context.get_dummy_value()

    return sig, codegen


#: ``ftz_on() -> uint32`` inside a kernel (typed ``Any`` for mypy: numba intrinsics take a hidden
#: typing context argument that kernels do not pass).
ftz_on: Any = _ftz_on
#: ``ftz_restore(old)`` inside a kernel.
ftz_restore: Any = _ftz_restore


@intrinsic
def _fma(typingctx: Any, a: Any, b: Any, c: Any) -> Any:
    """``a * b + c`` rounded once, for float32 or float64 operands of one type."""
    if not (isinstance(a, types.Float) and a == b == c):
        return None
    sig = a(a, b, c)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        ty = context.get_value_type(signature.return_type)
        name = "llvm.fma.f32" if signature.return_type == types.float32 else "llvm.fma.f64"
        fn = cgutils.get_or_insert_function(  # type: ignore[no-untyped-call]
            builder.module, ir.FunctionType(ty, [ty, ty, ty]), name)
        return builder.call(fn, args)

    return sig, codegen


@intrinsic
def _prefetch(typingctx: Any, arr: Any, index: Any) -> Any:
    """Prefetch the cache line of ``arr[index]`` (``index`` a tuple of ints) for reading, into L2."""
    if not (isinstance(arr, types.Array) and isinstance(index, types.UniTuple)
            and isinstance(index.dtype, types.Integer) and index.count == arr.ndim):
        return None
    sig = types.void(arr, index)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        aryty, idxty = signature.args
        ary = context.make_array(aryty)(context, builder, args[0])
        idx = [context.cast(builder, builder.extract_value(args[1], d), idxty.dtype, types.intp)
               for d in range(idxty.count)]
        ptr = cgutils.get_item_pointer(  # type: ignore[no-untyped-call]
            context, builder, aryty, ary, idx, wraparound=False)
        i8p = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fn = cgutils.get_or_insert_function(  # type: ignore[no-untyped-call]
            builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]),
            "llvm.prefetch.p0")
        # (address, read = 0, locality 2 = keep in L2 and below, data cache = 1)
        builder.call(fn, [builder.bitcast(ptr, i8p), ir.Constant(i32, 0), ir.Constant(i32, 2),
                          ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return sig, codegen


#: ``fma(a, b, c) -> a * b + c`` with one rounding, inside a kernel (all three of one float type).
fma: Any = _fma
#: ``prefetch(a, (i, j[, k]))`` inside a kernel: a read hint for the line holding ``a[i, j[, k]]``;
#: the index must lie inside the array (it is not checked, and a prefetch never faults).
prefetch: Any = _prefetch
