"""Which open object uses each resource: a caller's tier (Checkpointers), a store (ZarrTiers).

Two users of one resource at once would write the same steps or rows and delete each other's
checkpoints, so a second one is refused while the first holds it: from its claim, made before it
touches the resource, until its ``close()`` (or a failed construction) releases it. The check
and the claim are one step under a lock, so two threads building users of one resource at the
same moment cannot both pass. The registry holds weak references: a user garbage-collected
without ``close()`` frees its resources with it.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Hashable
from typing import Generic, TypeVar

__all__ = ["OpenUsers"]

_K = TypeVar("_K", bound=Hashable)
_U = TypeVar("_U")


class OpenUsers(Generic[_K, _U]):
    """The user of each key (one at a time)."""

    def __init__(self) -> None:
        self._users: dict[_K, weakref.ref[_U]] = {}
        # Reentrant: a user collected while this thread holds the lock runs forget() here.
        self._lock = threading.RLock()

    def user(self, key: _K) -> _U | None:
        """The object holding ``key``, or ``None`` (none, released, or collected)."""
        with self._lock:
            ref = self._users.get(key)
            return None if ref is None else ref()

    def claim(self, key: _K, user: _U) -> _U | None:
        """Record ``user`` as the holder of ``key``, unless another object holds it: then return
        that one and record nothing. Checked and recorded in one step."""

        def forget(ref: weakref.ref[_U]) -> None:  # the user was collected
            with self._lock:
                if self._users.get(key) is ref:
                    del self._users[key]

        with self._lock:
            other = self.user(key)
            if other is not None and other is not user:
                return other
            self._users[key] = weakref.ref(user, forget)
            return None

    def release(self, user: _U) -> None:
        """Forget every key ``user`` holds."""
        with self._lock:
            for key, ref in list(self._users.items()):
                if ref() is user:
                    del self._users[key]
