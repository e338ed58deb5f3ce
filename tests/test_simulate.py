"""simulate: valid hand-written schedules are counted exactly, each broken rule is reported."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Final

import numpy as np
import pytest

from amcheck import ArgumentTypeError, InvalidArgumentError, ScheduleError
from amcheck.schedules import (
    Action,
    Advance,
    AsyncMultistage,
    End,
    Free,
    Load,
    Prefetch,
    Reverse,
    Revolve,
    Save,
    Schedule,
    ScheduleStats,
    StoreAll,
    TierName,
    TwoLevel,
    simulate,
)

R: Final = "ram"
D: Final = "disk"


class Listed(Schedule):
    """A schedule written out by hand: a forward list and a reverse list."""

    def __init__(
        self,
        forward: Sequence[object],
        reverse: Sequence[object],
        *,
        n_steps: int | None = 3,
        ram: int | None = 3,
        disk: int | None = 3,
    ) -> None:
        self.n_steps = n_steps
        self._forward = forward
        self._reverse = reverse
        self._capacity: dict[TierName, int | None] = {"ram": ram, "disk": disk}

    def __repr__(self) -> str:
        return "Listed()"

    @property
    def capacity(self) -> Mapping[TierName, int | None]:
        return self._capacity

    def forward(self) -> Iterator[Action]:
        if self.n_steps is None:  # endless, as the unknown-length protocol asks
            yield from self._forward  # type: ignore[misc]
            t = self._forward[-1].t1  # type: ignore[attr-defined]
            while True:
                yield Advance(t, t + 1)
                t += 1
        yield from self._forward  # type: ignore[misc]

    def reverse(self, n_steps: int) -> Iterator[Action]:
        yield from self._reverse  # type: ignore[misc]


# A valid schedule for n = 3 with both tiers, a prefetch and a disk load that was not prefetched.
FORWARD = [Save(0, D), Advance(0, 1), Save(1, R), Advance(1, 2), Advance(2, 3, final=True)]
REVERSE = [
    Reverse(2),
    Prefetch(0, D),
    Load(1, R),
    Reverse(1),
    Free(1, R),
    Load(0, D),
    Free(0, D),
    Reverse(0),
    End(),
]


def test_peak_buffers_writing() -> None:
    """The forward peak up to the advance after the last disk save; 0 without disk saves."""
    assert simulate(Revolve(30, 3)).peak_buffers_writing == 0
    assert simulate(StoreAll(4)).peak_buffers_writing == 0
    # Unknown n: the sweep ends in the advance after its last disk save.
    stats = simulate(AsyncMultistage(None, 3, 8), n_steps=20)
    assert stats.peak_buffers_writing == stats.peak_buffers_forward == 2
    # Known n: the last segment's descent (x_16 … x_18 pinned, x_19, x_20) comes after it.
    for schedule in (AsyncMultistage(20, 3, 8), TwoLevel(20, 3, 8)):
        stats = simulate(schedule)
        assert stats.peak_buffers_writing == 1 and stats.peak_buffers_forward == 5


def test_a_prefetch_freed_unread_gives_its_buffer_back() -> None:
    """x_1 prefetched from disk and freed without a load: its buffer goes back at the Free, so
    the later peak (x_0 loaded, x_0 … x_2 held) is 4 buffers, not 5."""
    forward = [Save(0, D), Save(0, R), Advance(0, 1), Save(1, D), Advance(1, 3),
               Advance(3, 4, final=True)]
    reverse = [Reverse(3), Free(0, R), Prefetch(1, D), Free(1, D), Load(0, D), Save(0, R),
               Advance(0, 1), Save(1, R), Advance(1, 2), Save(2, R), Reverse(2), Free(2, R),
               Load(1, R), Reverse(1), Free(1, R), Load(0, R), Reverse(0), Free(0, R),
               Free(0, D), End()]
    stats = simulate(Listed(forward, reverse, n_steps=4))
    assert stats.peak_buffers == 4 and stats.reads["disk"] == 1


def test_valid_hand_written_schedule_counts() -> None:
    stats = simulate(Listed(FORWARD, REVERSE))
    assert stats == ScheduleStats(
        n_steps=3,
        forward_steps=3,
        reverse_steps=3,
        writes={"ram": 1, "disk": 1},
        reads={"ram": 1, "disk": 1},
        peak={"ram": 1, "disk": 1},
        # After Prefetch(0): pinned x_1, current x_2, x_3, the prefetched x_0.
        peak_buffers=4,
        # At the end of forward(): pinned x_1, current x_2 and x_3.
        peak_buffers_forward=3,
        # Up to Advance(0, 1), the advance after the last disk save: x_1 in x_0's buffer.
        peak_buffers_writing=1,
        actions=14,
    )
    assert stats.recompute_factor == 1.0
    assert stats.to_dict()["recompute_factor"] == 1.0


def _replace(actions: list[object], index: int, *new: object) -> list[object]:
    return actions[:index] + list(new) + actions[index + 1 :]


# (forward, reverse, index of the bad action, words in the message)
BROKEN = [
    # Reverse order, exactly once, with the current state.
    (FORWARD, _replace(REVERSE, 0, Reverse(1)), 5, "expected Reverse(2), got Reverse(1)"),
    (FORWARD, _replace(REVERSE, 3, Reverse(2)), 8, "expected Reverse(1), got Reverse(2)"),
    (FORWARD, _replace(REVERSE, 2), 7, "needs x_1 as the current state, which is x_2"),
    (FORWARD, REVERSE[:-1] + [Reverse(0), End()], 13, "every reverse step has already run"),
    (FORWARD[:2] + [Reverse(1)], REVERSE, 2, "reverse step before x_n exists"),
    # Advance starts at the current step, t0 < t1 <= n, final exactly once at n.
    (
        _replace(FORWARD, 3, Advance(2, 3)),
        REVERSE,
        3,
        "starts at step 2 but the current state is x_1",
    ),
    (_replace(FORWARD, 3, Advance(1, 1)), REVERSE, 3, "t1 must be > t0"),
    (_replace(FORWARD, 4, Advance(2, 4, final=True)), REVERSE, 4, "runs past the last step"),
    (_replace(FORWARD, 3, Advance(1, 2, final=True)), REVERSE, 3, "final=True must produce x_n"),
    (_replace(FORWARD, 4, Advance(2, 3)), REVERSE, 4, "without final=True"),
    (FORWARD[:4], REVERSE, 4, "forward() ended without the final advance"),
    (FORWARD + [Reverse(2)], REVERSE, 5, "forward() must end with the advance that produces x_n"),
    (FORWARD, [Advance(2, 3, final=True)] + REVERSE, 5, "x_n is produced a second time"),
    # Save only of the current state, not already held.
    (_replace(FORWARD, 2, Save(0, R)), REVERSE, 2, "saves x_0 but the current state is x_1"),
    (FORWARD[:3] + [Save(1, R)] + FORWARD[3:], REVERSE, 3, "checkpoint 1 is already held"),
    # Load / Free / Prefetch only of checkpoints held.
    (FORWARD, _replace(REVERSE, 2, Load(1, D)), 7, "loads checkpoint 1, which tier 'disk'"),
    (FORWARD, _replace(REVERSE, 4, Free(2, R)), 9, "frees checkpoint 2, which tier 'ram'"),
    (FORWARD, _replace(REVERSE, 1, Prefetch(1, D)), 6, "prefetches checkpoint 1"),
    (FORWARD, _replace(REVERSE, 2, Load(1, "tape")), 7, "unknown tier 'tape'"),  # type: ignore[arg-type]
    # Everything freed at End, End last and present.
    (FORWARD, _replace(REVERSE, 6), 12, "still held in tier 'disk' (0)"),
    (FORWARD, REVERSE[:-1], 13, "the schedule ended without End"),
    (FORWARD, REVERSE + [Reverse(0)], 14, "an action after End"),
    (FORWARD, REVERSE[:3] + [End()], 8, "End before every reverse step ran: Reverse(1) is due"),
    (FORWARD[:1] + [End()], REVERSE, 1, "End in the forward sweep"),
    (FORWARD, _replace(REVERSE, 0, "Reverse(2)"), 5, "not an action"),
    # Malformed fields: steps are integers >= 0 (not bool, not float), tiers are 'ram'/'disk'.
    (_replace(FORWARD, 2, Save(1, ["ram"])), REVERSE, 2, "unknown tier ['ram']"),  # type: ignore[arg-type]
    (_replace(FORWARD, 2, Save(1, None)), REVERSE, 2, "unknown tier None"),  # type: ignore[arg-type]
    (_replace(FORWARD, 1, Advance(0, None)), REVERSE, 1,  # type: ignore[arg-type]
     "t1 must be an integer step >= 0, got None of type NoneType"),
    (_replace(FORWARD, 1, Advance(0, "1")), REVERSE, 1,  # type: ignore[arg-type]
     "t1 must be an integer step >= 0, got '1' of type str"),
    (FORWARD[:1] + [Advance(0, 0.5), Advance(0.5, 1)] + FORWARD[2:], REVERSE, 1,  # type: ignore[arg-type]
     "t1 must be an integer step >= 0, got 0.5 of type float"),
    (_replace(FORWARD, 1, Advance(False, True)), REVERSE, 1,
     "t0 must be an integer step >= 0, got False of type bool"),
    (FORWARD, _replace(REVERSE, 3, Reverse(True)), 8,
     "t must be an integer step >= 0, got True of type bool"),
    (FORWARD, _replace(REVERSE, 3, Reverse(1.0)), 8,  # type: ignore[arg-type]
     "t must be an integer step >= 0, got 1.0 of type float"),
    (FORWARD, _replace(REVERSE, 2, Load(1.0, R)), 7,  # type: ignore[arg-type]
     "t must be an integer step >= 0, got 1.0 of type float"),
    (FORWARD, _replace(REVERSE, 4, Free("1", R)), 9,  # type: ignore[arg-type]
     "t must be an integer step >= 0, got '1' of type str"),
    (FORWARD, _replace(REVERSE, 1, Prefetch(None, D)), 6,  # type: ignore[arg-type]
     "t must be an integer step >= 0, got None"),
    (FORWARD, _replace(REVERSE, 7, Reverse(-1)), 12, "t must be a step >= 0, got -1"),
]  # fmt: skip


@pytest.mark.parametrize(("forward", "reverse", "index", "words"), BROKEN)
def test_each_rule_is_enforced(
    forward: list[object], reverse: list[object], index: int, words: str
) -> None:
    with pytest.raises(ScheduleError) as info:
        simulate(Listed(forward, reverse))
    message = str(info.value)
    assert f"action {index} (" in message, message
    assert words in message, message


@pytest.mark.parametrize(
    ("capacity", "error", "words"),
    [
        ({"ram": "2", "disk": 0}, ArgumentTypeError,
         "Listed().capacity['ram'] must be an integer, got '2' of type str"),
        ({"ram": 2, "disk": 2.0}, ArgumentTypeError,
         "Listed().capacity['disk'] must be an integer, got 2.0"),
        ({"ram": True, "disk": 0}, ArgumentTypeError, "capacity['ram'] must be an integer, got True"),
        ({"ram": -1, "disk": 0}, InvalidArgumentError,
         "Listed().capacity['ram'] must be an integer >= 0, got -1"),
        (None, ArgumentTypeError, "Listed().capacity must be a mapping from tier name"),
        ({"ram": 3, "tape": 4}, InvalidArgumentError,
         "Listed().capacity names tier(s) 'tape'; the tiers are 'ram' and 'disk'"),
        ([("ram", 2)], ArgumentTypeError, "got [('ram', 2)] of type list"),
    ],
)  # fmt: skip
def test_capacity_must_map_tiers_to_integers(
    capacity: object, error: type[Exception], words: str
) -> None:
    schedule = Listed(FORWARD, REVERSE)
    schedule._capacity = capacity  # type: ignore[assignment]
    with pytest.raises(error) as info:
        simulate(schedule)
    assert words in str(info.value)


def test_final_must_be_a_bool() -> None:
    """Advance(2, 3, final=1) passed simulate and ran in the engine; a numpy bool is a bool."""
    for final in (1, "yes", None):
        forward = [*FORWARD[:-1], Advance(2, 3, final=final)]  # type: ignore[arg-type]
        with pytest.raises(ScheduleError, match=rf"final must be True or False, got {final!r}"):
            simulate(Listed(forward, REVERSE))
    forward = [*FORWARD[:-1], Advance(2, 3, final=np.int64(3) == 3)]
    assert simulate(Listed(forward, REVERSE)).forward_steps == 3


@pytest.mark.parametrize(("n_steps", "error", "words"), [
    ("3", ArgumentTypeError, "Listed().n_steps must be an integer, got '3'"),
    (True, ArgumentTypeError, "Listed().n_steps must be an integer, got True"),
    (0, InvalidArgumentError, "Listed().n_steps must be an integer >= 1, got 0"),
])
def test_a_schedules_own_length_is_checked(n_steps: object, error: type[Exception],
                                           words: str) -> None:
    """A hand-written schedule's n_steps of "3" raised a bare TypeError inside the replay;
    True and 0 a ScheduleError about t1 > n."""
    schedule = Listed(FORWARD, REVERSE)
    schedule.n_steps = n_steps  # type: ignore[assignment]
    with pytest.raises(error) as info:
        simulate(schedule)
    assert words in str(info.value)


def test_a_schedule_without_a_length_is_refused() -> None:
    """A Schedule subclass that never set n_steps raised a bare AttributeError."""
    schedule = Listed(FORWARD, REVERSE)
    del schedule.n_steps
    with pytest.raises(ArgumentTypeError, match=r"Listed\(\) has no n_steps: a Schedule sets "
                       r"self\.n_steps"):
        simulate(schedule)


def test_numpy_integer_steps_are_steps() -> None:
    """Integers of any kind are steps: counted as plain ints, same stats as the int version."""
    i = np.int64
    forward = [Save(i(0), D), Advance(i(0), i(1)), Save(i(1), R), Advance(i(1), 2),
               Advance(2, i(3), final=True)]  # fmt: skip
    reverse = [Reverse(i(2)), Prefetch(i(0), D), Load(i(1), R), Reverse(i(1)), Free(i(1), R),
               Load(i(0), D), Free(i(0), D), Reverse(i(0)), End()]  # fmt: skip
    stats = simulate(Listed(forward, reverse))  # type: ignore[arg-type]
    assert stats == simulate(Listed(FORWARD, REVERSE))
    assert type(stats.forward_steps) is int


def test_forward_and_reverse_must_return_iterables() -> None:
    class AsLists(Listed):
        def forward(self) -> Iterator[Action]:
            return list(self._forward)  # type: ignore[return-value]

        def reverse(self, n_steps: int) -> Iterator[Action]:
            return list(self._reverse)  # type: ignore[return-value]

    # Lists are fine (the replay keeps one iterator across the end of forward()).
    assert simulate(AsLists(FORWARD, REVERSE)) == simulate(Listed(FORWARD, REVERSE))

    class Nothing(Listed):
        def reverse(self, n_steps: int) -> Iterator[Action]:
            return None  # type: ignore[return-value]

    with pytest.raises(ScheduleError, match=r"reverse\(3\) must return an iterable of actions, "
                       r"got None of type NoneType"):  # fmt: skip
        simulate(Nothing(FORWARD, REVERSE))


@pytest.mark.parametrize(
    "schedule",
    [StoreAll(4), Revolve(30, 3), TwoLevel(17, 2, 5), AsyncMultistage(17, 2, 5),
     Listed(FORWARD, REVERSE)],
)  # fmt: skip
def test_reverse_steps_are_the_reverse_actions_replayed(schedule: Schedule) -> None:
    stats = simulate(schedule)
    assert schedule.n_steps is not None
    replayed = [a for a in schedule if type(a) is Reverse]
    assert stats.reverse_steps == len(replayed) == schedule.n_steps
    assert [a.t for a in replayed] == list(range(schedule.n_steps - 1, -1, -1))


def test_capacity_is_enforced() -> None:
    with pytest.raises(ScheduleError, match=r"action 2 .*'ram' would hold more than its capacity"):
        simulate(Listed(FORWARD, REVERSE, ram=0))
    with pytest.raises(ScheduleError, match=r"action 0 .*'disk' would hold more than .* of 0"):
        simulate(Listed(FORWARD, REVERSE, disk=0))
    stats = simulate(Listed(FORWARD, REVERSE, ram=None, disk=None))  # None: unbounded
    assert stats.peak == {"ram": 1, "disk": 1}


def test_revolve_with_too_few_slots_is_caught() -> None:
    # A real schedule replayed against a smaller capacity than it was planned for.
    actions: list[object] = list(Revolve(20, 4))
    split = actions.index(Advance(19, 20, final=True)) + 1
    with pytest.raises(ScheduleError, match="'ram' would hold more than its capacity of 3"):
        simulate(Listed(actions[:split], actions[split:], n_steps=20, ram=3, disk=0))


def test_unknown_length_replay() -> None:
    # The sweep ends at n = 5 inside Advance(4, 6): x_4 must come back from disk.
    forward = [Save(0, D), Advance(0, 2), Save(2, D), Advance(2, 4), Save(4, D), Advance(4, 6)]
    reverse = [
        Load(4, D), Free(4, D), Reverse(4),
        Load(2, D), Free(2, D), Advance(2, 3), Reverse(3), Load(0, D), Free(0, D), Advance(0, 2),
        Reverse(2), Load(0, D), Reverse(0),
    ]  # fmt: skip
    with pytest.raises(ScheduleError, match="action 17 .*loads checkpoint 0, which tier 'disk'"):
        simulate(Listed(forward, reverse, n_steps=None, disk=None), n_steps=5)
    # Reversing from the destroyed current state is caught.
    with pytest.raises(ScheduleError, match="action 6 .*x_4 as the current state, which is undef"):
        simulate(Listed(forward, [Reverse(4)], n_steps=None), n_steps=5)
    with pytest.raises(ScheduleError, match="final=True in a schedule of unknown length"):
        simulate(Listed([Save(0, D), Advance(0, 1, final=True)], [], n_steps=None), n_steps=5)
    # Advancing the destroyed current state (step -1) is caught: it used to pass as x_-1.
    from_nothing = [
        Advance(-1, 4), Reverse(4),
        Free(4, D), Load(2, D), Advance(2, 3), Reverse(3), Load(2, D), Free(2, D), Reverse(2),
        Load(0, D), Advance(0, 1), Reverse(1), Load(0, D), Free(0, D), Reverse(0), End(),
    ]  # fmt: skip
    with pytest.raises(ScheduleError, match=r"action 6 \(Advance\(t0=-1, .*t0 must be a step >= 0"):
        simulate(Listed(forward, from_nothing, n_steps=None, disk=None), n_steps=5)


def test_unknown_length_forward_that_stops_early() -> None:
    class Short(Listed):
        def forward(self) -> Iterator[Action]:
            yield Advance(0, 2)

    with pytest.raises(
        ScheduleError, match=r"action 1 \(end of the actions\).*before reaching n=5"
    ):
        simulate(Short([], [], n_steps=None), n_steps=5)


def test_simulate_arguments() -> None:
    with pytest.raises(InvalidArgumentError, match="n_steps is required"):
        simulate(TwoLevel(None, 2, 3))
    with pytest.raises(InvalidArgumentError, match="n_steps must be 10"):
        simulate(Revolve(10, 2), n_steps=11)
    with pytest.raises(ArgumentTypeError, match="n_steps must be an integer"):
        simulate(AsyncMultistage(None, 2, 3), n_steps=7.0)  # type: ignore[arg-type]
    with pytest.raises(ArgumentTypeError, match="schedule must be an amcheck.schedules.Schedule"):
        simulate([Advance(0, 1)])  # type: ignore[arg-type]
    assert simulate(Revolve(10, 2), n_steps=10) == simulate(Revolve(10, 2))


def test_peak_buffers_of_revolve_counts_final_and_current() -> None:
    # Revolve(3, 1): x_0 pinned, x_2 current (unpinned), x_3 in its own buffer.
    assert simulate(Revolve(3, 1)).peak_buffers == 3
