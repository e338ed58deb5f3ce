"""The inter-process lock of a local store: one open :class:`~amcheck.storage.ZarrTier` per
directory on the machine, not only per process.

Two tiers on one store take the same rows and overwrite each other's checkpoints without an
error (a wrong gradient). Within a process the open tiers are registered
(:mod:`amcheck.storage._users`); across processes the tier takes an exclusive, non-blocking
``flock`` on a lock file **next to** the store directory, ``<store>.lock`` (``run1.zarr`` ->
``run1.zarr.lock``), before it creates or looks at anything, and holds it until ``close()``,
which removes the file. The lock lives outside the store because zarr never sees it there: a
file inside would make a fresh store look non-empty, be listed by ``zarr.open_group`` readers,
and be deleted by zarr's own ``overwrite`` (``LocalStore.clear`` removes the whole directory).

The kernel drops an ``flock`` when its holder dies, however it dies (``SIGKILL`` included), so
a stale lock file left by a crash is taken over by the next opener; a crashed run leaves no
lock that needs deleting. The lock file holds ``"pid <n> on <host>"`` of its holder, for the
error message of the next opener.

Removing the file on close races with a process that opened it just before: that process may
then lock the unlinked file while a third one creates and locks a new file at the same path.
So a lock counts only if the path still names the locked file afterwards (same device and
inode), else the opener tries again (the usual ``flock`` + ``unlink`` protocol).

Where the lock cannot be had for another reason than a holder (no ``fcntl`` on the platform,
``ENOLCK``/``EOPNOTSUPP``/``ENOSYS`` from a network file system, a parent directory that is not
writable), the tier opens without it: the lock protects against a mistake, and what the store
itself needs is checked when it opens. :func:`probe` tells, without waiting, whether a lock
file is held (the Checkpointer's scan for the folders of crashed runs).
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import time
import weakref
from pathlib import Path
from typing import Literal

from amcheck._errors import StoreLockedError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no flock, the tier opens without a lock
    fcntl = None  # type: ignore[assignment]

__all__ = ["LOCK_SUFFIX", "StoreLock", "lock_path", "probe"]

#: What the lock file of store directory ``<store>`` is named: ``<store>.lock``, its sibling.
LOCK_SUFFIX = ".lock"

#: Seconds between tries while the lock is held (a probe of :func:`probe` holds it for
#: microseconds): a second opener fails after about 0.1 s.
_RETRY_DELAYS = (0.01, 0.03, 0.06)

#: Tries after finding the lock file replaced under us (close() removed it meanwhile).
_REPLACED_TRIES = 10

_BUSY = (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES)


def lock_path(root: str | os.PathLike[str]) -> Path:
    """The lock file of store directory ``root``: ``<root>.lock`` next to it (symlinks resolved,
    so that every path to one directory finds the same lock)."""
    real = Path(os.path.realpath(root))
    return real.with_name(real.name + LOCK_SUFFIX)


def _holder(path: Path) -> str:
    """Who holds the lock at ``path``, as its holder wrote it; ``""`` when unknown."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return ""
    if not text.startswith("pid "):
        return ""
    pid, _, host = text[len("pid ") :].partition(" on ")
    if pid == str(os.getpid()) and host == socket.gethostname():
        return " (this process)"
    return f" ({text})"


def _open_lock_file(path: Path) -> tuple[int, bool]:
    """Open lock file ``path`` for writing, creating it if missing; whether it was created."""
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644), True
    except FileExistsError:
        return os.open(path, os.O_RDWR | os.O_CLOEXEC), False


def _release(fd: int, path: Path, pid: int) -> None:
    """Remove the lock file while still holding it, then drop the lock (see the module notes).

    A forked child that inherited the descriptor only closes its copy: the lock and its file
    are the parent's.
    """
    if os.getpid() == pid:
        with contextlib.suppress(OSError):
            os.unlink(path)
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
    with contextlib.suppress(OSError):
        os.close(fd)


class StoreLock:
    """An exclusive ``flock`` held on a store's lock file, released by :meth:`release` (or when
    the lock is garbage-collected, or the process ends).

    Build it with :meth:`acquire`.

    Parameters
    ----------
    fd
        The open, locked lock file.
    path
        Its path.
    """

    def __init__(self, fd: int, path: Path) -> None:
        self.path = path
        self._finalizer = weakref.finalize(self, _release, fd, path, os.getpid())

    @classmethod
    def acquire(cls, root: str | os.PathLike[str], what: str) -> StoreLock | None:
        """Lock store directory ``root`` (its lock file, :func:`lock_path`) without waiting.

        Parameters
        ----------
        root
            The store directory (it need not exist; its parent must, or the lock is skipped).
        what
            The tier and store, for the error message.

        Returns
        -------
        StoreLock or None
            The lock, or ``None`` where no lock can be had on this platform or file system
            (see the module notes): the caller proceeds without one.

        Raises
        ------
        StoreLockedError
            Another holder (a ZarrTier of this or another process) has the lock.
        """
        if fcntl is None:  # pragma: no cover - Windows
            return None
        if not Path(os.path.realpath(root)).name:
            return None  # the file system's root: no directory beside it holds a lock file
        path = lock_path(root)
        busy = iter(_RETRY_DELAYS)
        for _ in range(_REPLACED_TRIES):
            try:
                fd, created = _open_lock_file(path)
            except FileNotFoundError:
                continue  # removed between two looks: try again
            except OSError:
                return None  # e.g. a parent directory that is not writable
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno not in _BUSY:  # flock unsupported (ENOLCK, EOPNOTSUPP, ENOSYS, ...)
                    if created:
                        with contextlib.suppress(OSError):
                            os.unlink(path)
                    return None
                delay = next(busy, None)
                if delay is None:
                    raise StoreLockedError(
                        f"{what} is open in another ZarrTier{_holder(path)}: its lock file "
                        f"{str(path)!r} is held. Two tiers on one store take the same rows and "
                        "overwrite each other's checkpoints; close the other tier (or let its "
                        "run end) first, or give this one a directory of its own"
                    ) from None
                time.sleep(delay)
                continue
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(path))
            except OSError:
                same = False  # removed by the holder's close() just before we locked it
            if not same:
                _release(fd, path, -1)  # not ours to remove: only close it
                continue
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
                os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
            return cls(fd, path)
        return None  # pragma: no cover - replaced ten times in a row: give up locking

    @property
    def held(self) -> bool:
        """Whether the lock is still held (not released)."""
        return self._finalizer.alive

    def release(self) -> None:
        """Remove the lock file and release the lock; calling it again does nothing."""
        self._finalizer()


def probe(path: Path) -> Literal["free", "held", "missing", "unknown"]:
    """Whether lock file ``path`` is held, without waiting and without creating it.

    Returns ``"free"`` (no process holds it: its holder ended without closing), ``"held"``,
    ``"missing"`` (no such file) or ``"unknown"`` (no ``flock`` here, or another error). A free
    lock is taken for an instant and released; the file is left as it is.
    """
    if fcntl is None:  # pragma: no cover - Windows
        return "unknown"
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return "missing"
    except OSError:
        return "unknown"
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        return "held" if exc.errno in _BUSY else "unknown"
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return "free"
    finally:
        os.close(fd)
