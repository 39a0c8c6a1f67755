"""Schedules and patrol plans on a controllable clock: intervals, windows, timezones, misses, one patrol per camera."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from itertools import pairwise

import pytest

from citywatch.pipelines.schedule import CameraBusy, CameraLeases, PatrolPlan, Schedule

T0 = datetime(2026, 5, 4, 0, 0, tzinfo=UTC)  # 08:00 in Asia/Shanghai
MINUTE = timedelta(minutes=1)


def local(at: datetime, zone: str = "Asia/Shanghai") -> str:
    from zoneinfo import ZoneInfo

    return at.astimezone(ZoneInfo(zone)).strftime("%H:%M")


@pytest.mark.parametrize(
    ("schedule", "after", "expected_local"),
    [
        (Schedule(timedelta(minutes=15)), T0 + 7 * MINUTE, "08:15"),
        (Schedule(timedelta(minutes=15)), T0, "08:00"),  # on the grid: now
        # A window that is over for today: tomorrow's opening (Shanghai time, not UTC).
        (Schedule(timedelta(minutes=15), (time(7), time(8))), T0 + MINUTE, "07:00"),
        (Schedule(timedelta(minutes=15), (time(9), time(21))), T0, "09:00"),
        # A window across midnight.
        (Schedule(timedelta(hours=1), (time(22), time(2))), T0, "22:00"),
        # Another timezone: 08:00 Shanghai is 02:00 in Berlin (CEST), before the 06:00 opening.
        (Schedule(timedelta(minutes=30), (time(6), time(20)), "Europe/Berlin"), T0, "06:00"),
    ],
)
def test_next_slot_keeps_to_the_grid_and_the_window(schedule: Schedule, after: datetime, expected_local: str) -> None:
    slot = schedule.next_slot(after)
    assert slot >= after
    assert local(slot, schedule.timezone) == expected_local
    assert schedule.in_window(slot)


def test_phase_shifts_the_grid_and_continuous_schedules_are_due_at_once() -> None:
    assert local(Schedule(timedelta(minutes=15)).next_slot(T0 + MINUTE, timedelta(minutes=5))) == "08:05"
    assert Schedule().next_slot(T0 + MINUTE) == T0 + MINUTE


def test_bad_schedules_are_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        Schedule(timedelta(0))
    with pytest.raises(ValueError, match="empty window"):
        Schedule(timedelta(minutes=5), (time(7), time(7)))


def test_plan_visits_presets_in_order_interleaved_and_stably() -> None:
    every = timedelta(minutes=12)
    presets = [(name, Schedule(every)) for name in ("north", "east", "south")]
    plan = PatrolPlan("cam-7", presets, start=T0)
    again = PatrolPlan("cam-7", presets, start=T0)
    assert plan.pending == again.pending  # the same config gives the same times on every replica
    dues = sorted((slot.due, preset) for preset, slot in plan.pending.items())
    gaps = {(b[0] - a[0]) for a, b in pairwise(dues)}
    assert gaps == {every / 3}  # interleaved evenly through the interval
    assert [preset for _, preset in dues] in (
        ["north", "east", "south"],
        ["east", "south", "north"],
        ["south", "north", "east"],
    )

    # Walk two hours visiting whatever is due; every preset is visited every 12 minutes, none missed.
    now, visits = T0, []
    while now < T0 + timedelta(hours=2):
        slot, missed = plan.take(now)
        assert missed == []
        if slot is None:
            now = plan.next_due()
            continue
        visits.append(slot)
        now += timedelta(seconds=20)  # the visit
        plan.finish(slot, now)
    for preset, _ in presets:
        times = [v.due for v in visits if v.preset_id == preset]
        assert len(times) == 10 and {b - a for a, b in pairwise(times)} == {every}


def test_a_camera_busy_too_long_misses_slots_with_a_reason() -> None:
    plan = PatrolPlan("cam-8", [("only", Schedule(timedelta(minutes=5)))], start=T0)
    first, _ = plan.take(plan.next_due())
    assert first is not None
    plan.finish(first, first.due)
    late = first.due + timedelta(minutes=16)  # three more slots came and went
    slot, missed = plan.take(late)
    assert slot is not None and slot.due == first.due + timedelta(minutes=15)
    assert [m.slot.due for m in missed] == [first.due + timedelta(minutes=m) for m in (5, 10)]
    assert all(m.reason.startswith("late: the camera was busy") for m in missed)


def test_plan_respects_the_window_across_a_day() -> None:
    schedule = Schedule(timedelta(hours=1), (time(7), time(21)))
    plan = PatrolPlan("cam-9", [("p", schedule)], start=T0)
    now, seen = T0, []
    while now < T0 + timedelta(days=1):
        slot, _ = plan.take(now)
        if slot is None:
            now = plan.next_due()
            continue
        seen.append(local(slot.due))
        plan.finish(slot, now)
    assert len(seen) == 14 and all("07:00" <= t < "21:00" for t in seen)


def test_one_camera_is_never_driven_by_two_patrols() -> None:
    leases = CameraLeases()
    with leases.hold("cam-1", "patrol A"):
        with pytest.raises(CameraBusy, match=r"cam-1.*patrol A"), leases.hold("cam-1", "patrol B"):
            pass
        with leases.hold("cam-2", "patrol B"):
            assert leases.holder("cam-2") == "patrol B"
    with leases.hold("cam-1", "patrol B"):  # released: another may take it
        assert leases.holder("cam-1") == "patrol B"
