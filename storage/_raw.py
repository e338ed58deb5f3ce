"""The raw-file disk tier: one preallocated file of fixed-size records.

Each checkpoint is one record: the state's fields back to back (C order, native byte order),
padded to a multiple of 4096 bytes so every record starts on a page. By default records move
with direct I/O (``O_DIRECT``, through the aligned bounce buffers of
:mod:`amcheck.storage._direct`, as the zarr tier's do); with ``direct=False`` a write is one
``pwritev`` of the caller's arrays and a read one ``preadv`` straight into the caller's buffers.
Both run off the event loop through :func:`aiofiles.os.wrap` (the loop's executor: the transfer
service's I/O threads). No compression, no allocation: this tier is the baseline that shows what
zarr costs (``benchmarks/disk_vs_ram.py``).

Integrity: the one piece of per-checkpoint metadata is a crc32c of the record's bytes, computed
on the caller's memory by the I/O job that writes it (no copy; about 0.15 ms per 4 MiB here) and
kept in memory with the step; the I/O job that reads a record computes it again on the arrays
the caller gets (after the bounce buffer, with direct I/O), and a mismatch raises
:class:`~amcheck.TransferError` naming the step, the tier and the file. So a damaged file, a
zeroed page, or a write the OS reported done but never made (the record then holds its previous
checkpoint) is an error, not a wrong state. ``checksum=False`` drops it (what the benchmark's
raw baseline does): then nothing is checked.

Records are reused after ``delete``; an overwrite writes a fresh record before releasing the
old one, except when every record is in use: then it writes over the old one in place, and if
that write fails the step is dropped (its error says so). The step -> (record, crc32c) index
lives in memory only, so the file is scratch space: it is removed on ``close``
(``is_persistent`` is False).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Any

import aiofiles.os
import numpy as np
from amcheck.storage._checksum import ChecksumError
from amcheck.storage._direct import DirectFiles, direct_files
from amcheck.storage._local_io import preadv_all, pwritev_all
from amcheck.storage._tier import Tier, not_held

from amcheck._bytes import ByteSize, format_bytes, parse_bytes
from amcheck._errors import (
    ArgumentTypeError,
    InvalidArgumentError,
    SweepStateError,
    TierFullError,
    TransferError,
)
from amcheck._state import State, StateSpec
from amcheck._validate import (
    check_bool,
    check_int,
    check_name,
    check_optional_int,
    check_path,
)

__all__ = ["RECORD_ALIGNMENT", "RawTier"]

#: Records start on multiples of this many bytes (a page; also what O_DIRECT needs).
RECORD_ALIGNMENT = 4096

#: File name used when ``path`` is a directory.
DEFAULT_FILE = "amcheck-checkpoints.raw"
#: The largest file size (the file offset type's range): a preallocation beyond it overflowed.
_MAX_FILE = 2**63 - 1


def _bytes_of(array: np.ndarray) -> np.ndarray:
    """The bytes of the C-contiguous ``array`` as a flat uint8 view (no copy): the buffer
    protocol refuses datetime64 and timedelta64 arrays ("cannot include dtype 'M' in a
    buffer"), a uint8 view of the same memory moves and checksums any fixed-size dtype."""
    return array.reshape(-1).view(np.uint8)


def _crc32c(pieces: list[np.ndarray]) -> int:
    """The crc32c of ``pieces`` back to back, computed on their memory (no copy)."""
    import crc32c

    value = 0
    for piece in pieces:
        value = crc32c.crc32c(piece.data.cast("B"), value)
    return int(value)


def _write_record(
    files: DirectFiles | None, fd: int, pieces: list[np.ndarray], offset: int, checksum: bool
) -> int | None:
    """I/O job of a put: write ``pieces`` as the record at ``offset``; their crc32c (or ``None``)."""
    if files is not None:
        files.write(fd, pieces, offset)
    else:
        pwritev_all(fd, pieces, offset)
    # After the write, in the same job: one thread hop per put, and the pieces are in cache.
    return _crc32c(pieces) if checksum else None


def _read_record(
    files: DirectFiles | None, fd: int, pieces: list[np.ndarray], offset: int, checksum: bool
) -> int | None:
    """I/O job of a get: fill ``pieces`` from the record at ``offset``; the crc32c of what they
    now hold (or ``None``), i.e. of the data as delivered, after any bounce buffer."""
    if files is not None:
        files.read(fd, pieces, offset)
    else:
        preadv_all(fd, pieces, offset)
    return _crc32c(pieces) if checksum else None


_write = aiofiles.os.wrap(_write_record)
_read = aiofiles.os.wrap(_read_record)
_fdatasync = aiofiles.os.wrap(os.fdatasync)


class RawTier(Tier):
    """Checkpoints as fixed-size records in one preallocated file.

    Parameters
    ----------
    path
        The file to create, or an existing directory to create ``amcheck-checkpoints.raw`` in.
        The file is removed on :meth:`close`. An existing file is refused unless ``overwrite``
        (it may be yours, or another RawTier's), and a file another open RawTier uses is refused
        in any case (an exclusive ``flock`` on it, held until :meth:`close`; where the file
        system has no such locks the tier opens without one).
    spec
        The state layout.
    records
        Number of records (checkpoints held at once) to preallocate.
    budget
        Bytes the file may take (``"8 GiB"``, an int; not a percentage); the number of records is
        ``budget // record_nbytes``. Give ``records`` or ``budget`` or neither: with neither the
        file grows as checkpoints come and ``capacity`` is ``None``.
    durable
        Whether each put ends with ``fdatasync`` (the checkpoint survives a crash of the machine,
        at the cost of waiting for the disk). Without it, :meth:`flush` does it on demand.
    direct
        Move records with direct I/O (``O_DIRECT``), bypassing the page cache, as
        :class:`~amcheck.storage.ZarrTier` does: ``None`` (default) wherever the file system
        supports it, ``True`` required, ``False`` through the page cache. :attr:`direct` tells.
    checksum
        Whether each record's crc32c is computed at the put and checked after every get (one
        pass over the bytes each way, about 0.15 ms per 4 MiB on the benchmark machine, on the
        I/O thread). ``False`` checks nothing: a damaged file or a lost write comes back as a
        wrong state without an error (the raw-disk baseline of ``benchmarks/disk_vs_ram.py``).
    overwrite
        Whether an existing file at ``path`` may be replaced (default ``False``: refused, it
        may be yours or another RawTier's). A file another open RawTier holds is refused even so.
    name
        Tier name in statistics and messages.

    Raises
    ------
    BudgetError
        ``budget`` is smaller than one record.
    TransferError
        The file cannot be created or preallocated (e.g. the disk is full). A get raises it
        too when a record fails its crc32c check.
    """

    is_persistent = False

    def __init__(
        self,
        path: str | os.PathLike[str],
        spec: StateSpec,
        *,
        records: int | None = None,
        budget: ByteSize | None = None,
        durable: bool = False,
        direct: bool | None = None,
        checksum: bool = True,
        overwrite: bool = False,
        name: str = "disk",
    ) -> None:
        from amcheck._errors import BudgetError

        if not isinstance(spec, StateSpec):
            raise ArgumentTypeError(f"spec must be a StateSpec, got {type(spec).__name__}")
        check_path("path", path, "a file or a directory")
        durable = check_bool("durable", durable)
        checksum = check_bool("checksum", checksum)
        overwrite = check_bool("overwrite", overwrite)
        if records is not None and budget is not None:
            raise InvalidArgumentError(
                f"give records or budget, not both (got records={records!r}, budget={budget!r})"
            )
        self.spec = spec
        self.name = check_name("name", name)
        self.durable = durable
        #: Whether records are checked against their crc32c (see the ``checksum`` parameter).
        self.checksum = checksum
        self._keys = [key for key, f in spec.items() if f.nbytes > 0]
        size = max(spec.nbytes, 1)
        self.record_nbytes = -(-size // RECORD_ALIGNMENT) * RECORD_ALIGNMENT
        n_records = check_optional_int("records", records, minimum=1)
        if budget is not None:
            nbytes = parse_bytes(budget, "budget", on_disk=True)
            n_records = nbytes // self.record_nbytes
            if n_records < 1:
                raise BudgetError(
                    f"budget of {format_bytes(nbytes)} ({nbytes} bytes) holds no record of "
                    f"{format_bytes(self.record_nbytes)}; raise it to at least "
                    f"{self.record_nbytes} bytes"
                )
        if n_records is not None and n_records * self.record_nbytes > _MAX_FILE:
            raise BudgetError(
                f"{n_records} records of {format_bytes(self.record_nbytes)} "
                f"({format_bytes(n_records * self.record_nbytes)}) exceed the largest file a "
                f"file system can hold ({format_bytes(_MAX_FILE)}); give fewer records or a "
                "smaller budget"
            )
        self.n_records = n_records
        # Absolute now: close() removes the file, and a later chdir must not redirect that.
        target = Path(os.path.abspath(os.path.expanduser(path)))
        if target.is_dir():
            target = target / DEFAULT_FILE
        self.path = str(target)
        self._direct = direct_files(direct, target.parent, str(target.parent))
        #: Whether records move with direct I/O (``O_DIRECT``), see the ``direct`` parameter.
        self.direct: bool = self._direct is not None
        # Not O_TRUNC: the file is emptied only once this tier holds its lock.
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
        if not overwrite:
            flags |= os.O_EXCL
        try:
            self._fd: int | None = (
                self._direct.open(target, flags) if self._direct else os.open(target, flags, 0o644)
            )
        except FileExistsError:
            raise InvalidArgumentError(
                f"path={self.path!r} exists; RawTier refuses to replace a file unless "
                "overwrite=True (a file left by a crashed run may be replaced that way)"
            ) from None
        except OSError as exc:
            raise TransferError(
                f"raw tier {self.name!r}: could not create {self.path}: {exc}"
            ) from exc
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fd, self._fd = self._fd, None  # closed here, not again by __del__
            os.close(fd)
            raise InvalidArgumentError(
                f"path={self.path!r} is used by another open RawTier (this or another "
                "process); give each tier its own file"
            ) from None
        except OSError:
            pass  # no flock on this file system: open without the lock
        os.ftruncate(self._fd, 0)
        if n_records is not None:
            try:
                os.posix_fallocate(self._fd, 0, n_records * self.record_nbytes)
            except BaseException as exc:  # the file goes in any case: it would block the path
                fd, self._fd = self._fd, None
                os.unlink(self.path)
                os.close(fd)
                if not isinstance(exc, OSError):
                    raise
                raise TransferError(
                    f"raw tier {self.name!r}: could not preallocate "
                    f"{format_bytes(n_records * self.record_nbytes)} at {self.path}: {exc}"
                ) from exc
        self._index: dict[int, int] = {}
        self._crcs: dict[int, int] = {}  # step -> crc32c of its record (with ``checksum``)
        self._free: list[int] = []
        self._next = 0

    # -- helpers -------------------------------------------------------------------------------

    def _fd_open(self) -> int:
        if self._fd is None:
            raise SweepStateError(f"raw tier {self.name!r} at {self.path} is closed")
        return self._fd

    def _take(self, step: int) -> int:
        if self._free:
            return self._free.pop()
        if self.n_records is not None and self._next >= self.n_records:
            raise TierFullError(
                f"raw tier {self.name!r} at {self.path}: all {self.n_records} records of "
                f"{format_bytes(self.record_nbytes)} are held, no room for step {step}; "
                "delete a checkpoint or allocate more records"
            )
        self._next += 1
        return self._next - 1

    def _error(self, what: str, step: int, exc: BaseException) -> TransferError:
        return TransferError(
            f"raw tier {self.name!r}: {what} of step {step} at {self.path} failed: "
            f"{type(exc).__name__}: {exc}"
        )

    # -- Tier interface ------------------------------------------------------------------------

    async def put(self, step: int, state: State) -> None:
        fd = self._fd_open()
        step = check_int("step", step, minimum=0)
        self.spec.check(state)
        old = self._index.get(step)
        if old is not None and self.n_records is not None and not self._free and (
            self._next >= self.n_records
        ):
            record = old  # full: overwrite in place rather than refuse a replacement
        else:
            record = self._take(step)
        try:
            pieces = [_bytes_of(state[key]) for key in self._keys]
            crc = await _write(
                self._direct, fd, pieces, record * self.record_nbytes, self.checksum
            )
            if self.durable:
                await _fdatasync(fd)
        except Exception as exc:
            error = self._error("write", step, exc)
            if record == old:  # overwritten in place: the old checkpoint is partly gone too
                del self._index[step]
                self._crcs.pop(step, None)
                error.add_note(f"the checkpoint x_{step} it replaced in place is lost")
            self._free.append(record)
            raise error from exc
        current = self._index.get(step)
        self._index[step] = record
        if crc is not None:
            self._crcs[step] = crc
        if current is not None and current != record:
            self._free.append(current)

    async def get(self, step: int, out: State) -> None:
        fd = self._fd_open()
        step = check_int("step", step, minimum=0)  # True would find step 1
        record = self._index.get(step)
        if record is None:
            raise not_held(f"raw tier {self.name!r} at {self.path}", step, self._index)
        self.spec.check(out, "out", writable=True)
        try:
            pieces = [_bytes_of(out[key]) for key in self._keys]
            crc = await _read(self._direct, fd, pieces, record * self.record_nbytes, self.checksum)
            expected = self._crcs.get(step)
            if crc is not None and expected is not None and crc != expected:
                raise ChecksumError(
                    f"the crc32c of record {record} ({crc:#010x}) is not the one written for "
                    f"this checkpoint ({expected:#010x}): the file was changed or damaged, or a "
                    "write never reached it (the record then holds an older checkpoint)"
                )
        except Exception as exc:
            raise self._error("read", step, exc) from exc

    async def delete(self, step: int) -> None:
        self._fd_open()
        step = check_int("step", step, minimum=0)
        record = self._index.pop(step, None)
        self._crcs.pop(step, None)
        if record is None:
            raise not_held(f"raw tier {self.name!r} at {self.path}", step, self._index)
        self._free.append(record)

    async def trim(self) -> None:
        """A file that grows as checkpoints come (no ``records`` or ``budget``) is cut back to
        its last held record, so that after a full disk (the Checkpointer trims after an error)
        the space of deleted checkpoints goes back; a preallocated file keeps its size."""
        fd = self._fd_open()
        if self.n_records is not None:
            return
        end = max(self._index.values(), default=-1) + 1
        try:
            os.ftruncate(fd, end * self.record_nbytes)
        except OSError as exc:
            raise TransferError(
                f"raw tier {self.name!r}: could not shrink {self.path} to "
                f"{format_bytes(end * self.record_nbytes)}: {exc}") from exc
        self._free = [record for record in self._free if record < end]
        self._next = end

    async def flush(self) -> None:
        """Make every written checkpoint durable (``fdatasync`` of the file)."""
        fd = self._fd_open()
        try:
            await _fdatasync(fd)
        except OSError as exc:
            raise TransferError(
                f"raw tier {self.name!r}: fdatasync of {self.path} failed: {exc}"
            ) from exc

    async def close(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        self._index.clear()
        self._crcs.clear()
        try:  # while the lock is held: no other tier may have the file meanwhile
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise TransferError(
                f"raw tier {self.name!r}: removing its file {self.path} failed: {exc}"
            ) from exc
        finally:
            os.close(fd)

    def __contains__(self, step: object) -> bool:
        return step in self._index

    @property
    def steps(self) -> frozenset[int]:
        return frozenset(self._index)

    @property
    def nbytes(self) -> int:
        return len(self._index) * self.spec.nbytes

    @property
    def capacity(self) -> int | None:
        return None if self.n_records is None else self.n_records * self.spec.nbytes

    @property
    def local_path(self) -> str:
        """The file (see :attr:`Tier.local_path`)."""
        return self.path

    @property
    def closed(self) -> bool:
        return self._fd is None

    def max_checkpoints(self) -> int | None:
        """Its records, one checkpoint each (also for a state whose fields are all empty, whose
        capacity is 0 bytes)."""
        return self.n_records

    def __del__(self) -> None:  # a tier dropped without close() must not leak its descriptor
        fd: Any = getattr(self, "_fd", None)
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass

    def __repr__(self) -> str:
        return (
            f"RawTier({self.path!r}, records={self.n_records}, "
            f"record={format_bytes(self.record_nbytes)}, checkpoints={len(self._index)})"
        )
