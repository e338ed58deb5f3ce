"""The ``amcheck-*`` folders a Checkpointer makes for its disk tier, and the scan that finds those
of crashed runs.

``Checkpointer(..., disk="some/dir")`` makes a fresh folder ``some/dir/amcheck-<16 random hex
digits>`` holding its :class:`~amcheck.storage.ZarrTier` store,
``checkpoints.zarr``, and that store's lock file ``checkpoints.zarr.lock`` (held by the run:
:mod:`amcheck.storage._lock`), and on ``close()`` releases the lock (removing its file) and then
removes the folder: a scan in between finds the folder just changed (see below) and passes it
over. A run killed (``SIGKILL``,
out of memory, a node failure) leaves its folder behind, with a lock file nobody holds: the
kernel released the lock with the process.

So each new folder's Checkpointer looks at the other ``amcheck-*`` folders of the same directory
(its direct children only; a ``listdir`` and an ``flock`` try each) and warns about those no
process holds (each once a process), with their sizes. It does not delete them: ``flock`` may be
a no-op on some network file systems (where a live run's folder would look stale), and the
warning costs nothing if wrong. A folder is skipped while

- its lock is held (a live run), or the lock cannot be tried (no ``flock`` there);
- it changed in the last :data:`YOUNG_SECONDS` (a run is making it, and has not locked it yet,
  or is removing it: its lock file went a moment ago);
- it holds anything but ``checkpoints.zarr`` and its lock file (not a folder amcheck made), or
  its name is not ``amcheck-`` and 16 hex digits (or the 8 characters of ``mkdtemp``, which
  made the folders before).

The scan runs only when the new tier itself holds its lock (the file system has ``flock``).
"""

from __future__ import annotations

import os
import re
import time
import warnings
from pathlib import Path

from amcheck._bytes import format_bytes
from amcheck.storage._lock import LOCK_SUFFIX, probe

__all__ = ["PREFIX", "STORE_NAME", "stale_folders", "warn_stale_folders"]

#: The prefix of the folder a Checkpointer makes in its ``disk`` directory.
PREFIX = "amcheck-"

#: The name of the zarr store inside that folder (its lock file: this name + ``".lock"``).
STORE_NAME = "checkpoints.zarr"

#: Seconds a folder must have been left unchanged to count as stale: a run makes its folder
#: a moment before its tier locks it, and a first import of zarr or a codec in
#: between takes seconds on a loaded machine.
YOUNG_SECONDS = 30.0

# the Checkpointer's 16 hex digits, or tempfile.mkdtemp's 8 characters (before 2026-11-30)
_NAME = re.compile(re.escape(PREFIX) + r"([0-9a-f]{16}|[a-z0-9_]{8})")
_CONTENTS = frozenset({STORE_NAME, STORE_NAME + LOCK_SUFFIX})
#: The stale folders this process has warned about: each is named once, not by every
#: Checkpointer made beside it (an inversion makes one per shot and gradient).
_WARNED: set[Path] = set()


def _size(folder: Path) -> int:
    """Bytes of the files under ``folder`` (symlinks not followed; unreadable parts skipped)."""
    total = 0
    for parent, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(parent, name)).st_size
            except OSError:
                pass
    return total


def stale_folders(directory: Path, own: Path) -> list[tuple[Path, int]]:
    """The folders of ``directory`` that ended Checkpointers left behind, with their bytes.

    Parameters
    ----------
    directory
        The ``disk`` directory.
    own
        The folder just made there (not looked at).

    Returns
    -------
    list of (Path, int)
        Each stale folder (see the module notes for what counts) and the bytes of its files,
        sorted by name. Errors while looking (a folder removed meanwhile, no permission) leave a
        folder out; the scan itself never raises.
    """
    found: list[tuple[Path, int]] = []
    now = time.time()
    try:
        entries = sorted(os.scandir(directory), key=lambda e: e.name)
    except OSError:
        return found
    for entry in entries:
        try:
            if (
                not _NAME.fullmatch(entry.name)
                or entry.name == own.name
                or not entry.is_dir(follow_symlinks=False)
                or now - entry.stat(follow_symlinks=False).st_mtime < YOUNG_SECONDS
                or not set(os.listdir(entry.path)) <= _CONTENTS
            ):
                continue
        except OSError:
            continue
        folder = Path(entry.path)
        if probe(folder / (STORE_NAME + LOCK_SUFFIX)) in ("free", "missing"):
            found.append((folder, _size(folder)))
    return found


def warn_stale_folders(directory: Path, own: Path, stacklevel: int) -> None:
    """Warn (a ``UserWarning``) about the :func:`stale_folders` of ``directory``, if any;
    ``stacklevel`` counts from the caller (1: the caller's own line)."""
    stale = [(folder, nbytes) for folder, nbytes in stale_folders(directory, own)
             if folder not in _WARNED]
    if not stale:
        return
    _WARNED.update(folder for folder, _ in stale)  # once a process: a demo makes dozens
    listed = ", ".join(f"{folder.name} ({format_bytes(nbytes)})" for folder, nbytes in stale)
    total = format_bytes(sum(nbytes for _, nbytes in stale))
    warnings.warn(
        f"amcheck found {len(stale)} folder(s) in {str(directory)!r} left by Checkpointers that "
        f"ended without close() (killed or crashed): {listed}; {total} in all. No process holds "
        "them and amcheck never reuses them; amcheck does not delete them itself: delete them "
        "(rm -r) to free the space",
        UserWarning,
        stacklevel=stacklevel + 1,
    )
