"""Clock sanity cases: boot before NTP, NTP jump forward, clock going back, store floor."""

from __future__ import annotations

from bzlogger import RELEASE_EPOCH
from bzlogger.daemon.clock_guard import ClockGuard, ClockState

DAY = 86400.0
T0 = RELEASE_EPOCH + 5 * DAY


def test_normal_running_clock_is_ok() -> None:
    guard = ClockGuard(RELEASE_EPOCH)
    for i in range(5):
        verdict = guard.observe(T0 + i, 100.0 + i)
        assert verdict.usable and verdict.jump_s == 0
    assert guard.floor == T0 + 4
    assert guard.plausible(T0 + 3.5)


def test_boot_in_1970_waits_for_ntp_then_accepts_the_forward_jump() -> None:
    guard = ClockGuard(RELEASE_EPOCH)
    verdict = guard.observe(0.0, 5.0)
    assert verdict.state is ClockState.WAITING
    assert "waiting for NTP" in verdict.reason and "release date" in verdict.reason
    assert not guard.plausible(0.0)
    verdict = guard.observe(T0, 6.0)  # NTP synced
    assert verdict.usable
    assert verdict.jump_s > 0 and "accepted" in verdict.reason
    assert guard.jumps == 1


def test_fake_hwclock_time_older_than_the_store_waits() -> None:
    store_newest = T0 + 3600
    guard = ClockGuard(RELEASE_EPOCH, store_newest)
    verdict = guard.observe(T0, 1.0)  # fake-hwclock restored an hour-old time
    assert not verdict.usable
    assert "newest time in the store" in verdict.reason
    assert verdict.wait_until == store_newest
    assert guard.observe(store_newest + 10, 2.0).usable


def test_clock_going_back_waits_until_it_passes_the_newest_time_used() -> None:
    guard = ClockGuard(RELEASE_EPOCH)
    assert guard.observe(T0, 10.0).usable
    assert guard.observe(T0 + 100, 110.0).usable
    verdict = guard.observe(T0 + 40, 111.0)  # stepped back by 61 s
    assert verdict.state is ClockState.WAITING
    assert verdict.jump_s < -60
    assert "went back" in verdict.reason
    assert not guard.plausible(T0 + 40)
    assert not guard.observe(T0 + 99, 170.0).usable
    assert guard.observe(T0 + 101, 172.0).usable
    # A sighting stamped while the clock was behind is refused even once it is ok again.
    assert not guard.plausible(T0 + 60)
    assert guard.plausible(T0 + 101)


def test_small_jitter_is_not_a_jump() -> None:
    guard = ClockGuard(RELEASE_EPOCH, jump_tolerance_s=2.0)
    guard.observe(T0, 0.0)
    verdict = guard.observe(T0 + 1.5, 0.2)
    assert verdict.usable and verdict.jump_s == 0
    assert guard.jumps == 0


def test_the_reason_for_waiting_after_a_step_back_stays_until_the_clock_catches_up() -> None:
    guard = ClockGuard(RELEASE_EPOCH)
    guard.observe(T0, 0.0)
    guard.observe(T0 - 300, 1.0)
    verdict = guard.observe(T0 - 299, 2.0)
    assert not verdict.usable and verdict.jump_s == 0
    assert verdict.reason.startswith("clock went back 5 min")
    assert guard.observe(T0 + 1, 303.0).usable
