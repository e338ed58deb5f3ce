"""The tier interface: where checkpoints live.

Implementers subclass :class:`Tier` and provide the five coroutines and the byte accounting.
A tier stores whole states by step; ``get`` fills the caller's buffers so the hot path allocates
nothing. Every tier is tested by the shared conformance class in ``tests/tier_conformance.py``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable

from amcheck._errors import CheckpointNotFoundError
from amcheck._state import State, StateSpec
from amcheck._validate import check_int

__all__ = ["Tier"]


class Tier(ABC):
    """Abstract checkpoint store, addressed by step.

    Notes for implementers
    ----------------------
    - ``put`` of a step already held replaces it (overwrite); ``get`` and ``delete`` of a step not
      held raise :class:`amcheck.CheckpointNotFoundError`.
    - ``put`` must not keep a reference to the caller's arrays once it returns; ``get`` writes into
      ``out`` (arrays of the spec's shapes and dtypes) and returns nothing.
    - A tier that runs out of room raises :class:`amcheck.TierFullError` from ``put``.
    - After ``close`` every call but ``close`` raises :class:`amcheck.SweepStateError`; ``close``
      twice is harmless. Override :attr:`closed` so that a Checkpointer refuses a closed tier.
    - Errors from the underlying storage name the step and the path.
    """

    #: Whether checkpoints outlive the process (a disk store) or not (RAM).
    is_persistent: bool = False

    #: Tier name used in statistics and messages ("ram", "disk").
    name: str

    #: The state layout this tier stores.
    spec: StateSpec

    @abstractmethod
    async def put(self, step: int, state: State) -> None:
        """Store x_step, a copy of ``state``; replaces a checkpoint already held at ``step``."""

    @abstractmethod
    async def get(self, step: int, out: State) -> None:
        """Fill ``out`` with the checkpoint x_step."""

    @abstractmethod
    async def delete(self, step: int) -> None:
        """Drop the checkpoint x_step."""

    @abstractmethod
    async def close(self) -> None:
        """Release resources; held checkpoints are dropped unless the tier is persistent."""

    @abstractmethod
    def __contains__(self, step: object) -> bool:
        """Whether the checkpoint x_step is held."""

    @property
    @abstractmethod
    def steps(self) -> frozenset[int]:
        """The steps currently held."""

    @property
    @abstractmethod
    def nbytes(self) -> int:
        """Bytes the held checkpoints take in this tier (after compression, where it applies)."""

    @property
    @abstractmethod
    def capacity(self) -> int | None:
        """Bytes this tier may hold, or ``None`` when it is unbounded."""

    async def trim(self) -> None:
        """Give back the room that deleted checkpoints still take, where a tier keeps it for
        reuse (a :class:`ZarrTier` on a local directory keeps their files); nothing by default.
        A :class:`~amcheck.Checkpointer` calls it after an error, so that a full disk is not
        left full."""

    @property
    def local_path(self) -> str | None:
        """The local file or directory holding the checkpoints, or ``None`` (the default) for a
        tier that is not on a local file system. The transfer threads of a
        :class:`~amcheck.Checkpointer` run on the CPUs that take the interrupts of its disk
        (:mod:`amcheck.storage._cpus`)."""
        return None

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has run (a Checkpointer refuses a closed tier); ``False`` by
        default, for tiers that do not track it."""
        return False

    def max_checkpoints(self) -> int | None:
        """The most uncompressed checkpoints :attr:`capacity` holds, or ``None`` (unbounded).

        A :class:`~amcheck.Checkpointer` given this tier as its disk (and no ``disk_budget``, or
        a larger one) plans for at most this many disk checkpoints. This default counts
        :meth:`data_nbytes` a checkpoint; a tier that stores more (checksums, indexes)
        overrides it.
        """
        cap = self.capacity
        return None if cap is None else cap // max(self.data_nbytes(), 1)

    def data_nbytes(self) -> int:
        """What one checkpoint counts against a :class:`~amcheck.Checkpointer`'s
        ``disk_budget``: the state's bytes (``spec.nbytes``) by default; a tier that codes
        states at a fixed size of their own (a :class:`ZarrTier` with ``"zfp:rate=..."``)
        overrides it."""
        return self.spec.nbytes


def not_held(where: str, step: object, held: Iterable[int]) -> CheckpointNotFoundError:
    """The error for a step the tier ``where`` does not hold, once ``step`` is checked to be a
    step at all (``"0"`` is not step 0: the message said "no checkpoint at step 0; it holds
    steps [0, ...]").

    Raises
    ------
    ArgumentTypeError, InvalidArgumentError
        ``step`` is not an integer >= 0.
    """
    check_int("step", step, minimum=0)
    return CheckpointNotFoundError(
        f"{where} holds no checkpoint at step {step}; it holds steps {sorted(held)}"
    )
