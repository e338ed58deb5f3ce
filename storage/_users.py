"""Which open object uses each resource: a caller's tier (Checkpointers), a store (ZarrTiers).

Two users of one resource at once would write the same steps or rows and delete each other's
checkpoints, so a second one is refused while the first is open. The registry holds weak
references: a user garbage-collected without ``close()`` frees its resources with it.
"""

from __future__ import annotations

import weakref
from collections.abc import Hashable
from typing import Generic, Protocol, TypeVar

__all__ = ["OpenUsers"]


class _Closable(Protocol):
    @property
    def closed(self) -> bool: ...


_K = TypeVar("_K", bound=Hashable)
_U = TypeVar("_U", bound=_Closable)


class OpenUsers(Generic[_K, _U]):
    """The open user of each key (one at a time)."""

    def __init__(self) -> None:
        self._users: dict[_K, weakref.ref[_U]] = {}

    def user(self, key: _K) -> _U | None:
        """The open object using ``key``, or ``None`` (none, closed, or collected)."""
        ref = self._users.get(key)
        user = None if ref is None else ref()
        return user if user is not None and not user.closed else None

    def claim(self, key: _K, user: _U) -> None:
        """Record ``user`` as the user of ``key`` (check :meth:`user` first)."""

        def forget(ref: weakref.ref[_U]) -> None:  # the user was collected
            if self._users.get(key) is ref:
                del self._users[key]

        self._users[key] = weakref.ref(user, forget)

    def release(self, user: _U) -> None:
        """Forget every key ``user`` uses."""
        for key, ref in list(self._users.items()):
            if ref() is user:
                del self._users[key]
