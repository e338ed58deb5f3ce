"""Run a coroutine to completion from synchronous code, whether or not a loop runs in this thread.

The tiers are asynchronous, but a few synchronous entry points must await them: a tier's
constructor opens its store (zarr's store API is async), and a caller without a transfer
service closes a tier it built. ``asyncio.run`` refuses to start while an event loop runs in
the calling thread (an ``async def`` test, a notebook, a caller on the transfer service's own
loop), so :func:`run_sync` then runs the coroutine on a fresh loop in a short-lived helper
thread and waits for it. That blocks the calling loop for the duration, which is why it is
kept to one-off work (opening, closing), never to the transfers themselves: those go through
the :class:`~amcheck.storage.TransferService` loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["run_sync"]

_T = TypeVar("_T")


def run_sync(coro: Coroutine[Any, Any, _T]) -> _T:
    """Run ``coro`` to completion from synchronous code, also when a loop runs in this thread.

    Parameters
    ----------
    coro
        The coroutine; it must not need the calling thread's loop (it runs on another one when
        a loop is running here).

    Returns
    -------
    The coroutine's result; its exception, if it raised, is raised here.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = asyncio.run(coro)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
            box["error"] = exc

    thread = threading.Thread(target=target, name="amcheck-zarr-open")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["result"]  # type: ignore[no-any-return]
