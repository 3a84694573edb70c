"""The scanner's recovery policy, driven step by step with explicit times."""

from __future__ import annotations

import pytest

from bzlogger.ble.watchdog import Action, Fault, Phase, ScanPolicy


def scanning_policy(now: float = 0.0, silence: float = 90.0) -> ScanPolicy:
    policy = ScanPolicy(silence)
    policy.powered_changed(now, True)
    step = policy.next_step(now)
    assert step.action is Action.START
    policy.begin(step)
    policy.started(now)
    return policy


def test_first_step_is_start() -> None:
    policy = ScanPolicy(90)
    assert policy.next_step(0).action is Action.START


def test_adverts_keep_the_scanner_running() -> None:
    policy = scanning_policy()
    for t in range(0, 1000, 30):
        policy.advert(float(t))
        step = policy.next_step(float(t))
        assert step.action is Action.WAIT
        assert step.at == t + 90


def test_silence_restarts_then_backs_off_and_escalates_once() -> None:
    policy = scanning_policy()
    now = 0.0
    actions = []
    for _ in range(6):
        step = policy.next_step(now)
        assert step.action is Action.WAIT
        now = step.at
        step = policy.next_step(now)
        assert step.silence
        actions.append((step.action, now))
        policy.begin(step)
        if step.action is Action.POWER_CYCLE:
            policy.power_cycled(now)
            policy.begin(policy.next_step(now))
        policy.started(now)
    assert [a for a, _ in actions] == [Action.RESTART, Action.RESTART, Action.POWER_CYCLE,
                                       Action.RESTART, Action.RESTART, Action.RESTART]
    gaps = [b - a for (_, a), (_, b) in zip([(None, 0.0), *actions], actions, strict=False)]
    assert gaps == [90, 180, 360, 720, 1440, 1440]


def test_an_advert_ends_the_silent_streak() -> None:
    policy = scanning_policy()
    step = policy.next_step(90)
    policy.begin(step)
    policy.started(90)
    policy.advert(100)
    assert policy.silence_limit() == 90
    assert policy.next_step(150).at == 190


@pytest.mark.parametrize("fault", [Fault.IN_PROGRESS, Fault.NOT_READY, Fault.BUS_LOST])
def test_busy_errors_stop_then_start_with_backoff(fault: Fault) -> None:
    policy = ScanPolicy(90)
    policy.powered_changed(0, True)
    now = 0.0
    delays = []
    for _ in range(2):
        step = policy.next_step(now)
        assert step.action in (Action.START, Action.RESTART)
        policy.begin(step)
        policy.failed(now, fault, f"org.bluez.Error.{fault}")
        wait = policy.next_step(now)
        assert wait.action is Action.WAIT
        assert fault.value in wait.reason
        delays.append(wait.at - now)
        now = wait.at
    step = policy.next_step(now)
    assert step.action is Action.RESTART
    assert delays == [0.5, 1.0]


def test_repeated_failures_power_cycle_once_then_cap_backoff() -> None:
    policy = ScanPolicy(90, backoff_max=4)
    policy.powered_changed(0, True)
    now = 0.0
    seen = []
    for _ in range(8):
        step = policy.next_step(now)
        while step.action is Action.WAIT:
            now = step.at
            step = policy.next_step(now)
        seen.append(step.action)
        policy.begin(step)
        if step.action is Action.POWER_CYCLE:
            policy.power_cycled(now)
            continue
        policy.failed(now, Fault.IN_PROGRESS)
    assert seen.count(Action.POWER_CYCLE) == 1
    assert policy.backoff(10) == 4


def test_powered_off_waits_and_resumes_when_powered() -> None:
    policy = scanning_policy()
    policy.powered_changed(10, False)
    assert policy.phase is Phase.WAITING_ADAPTER
    step = policy.next_step(10)
    assert step.action is Action.WAIT and "powered off" in step.reason
    # a long wait while off is not silence
    assert policy.next_step(1000).action is Action.WAIT
    policy.powered_changed(1000, True)
    assert policy.next_step(1000).action is Action.START


def test_start_failing_because_powered_off_waits() -> None:
    policy = ScanPolicy(90)
    policy.failed(0, Fault.POWERED_OFF)
    assert policy.next_step(5).action is Action.WAIT
    policy.powered_changed(6, True)
    assert policy.next_step(6).action is Action.START


def test_bluetoothd_restart_rebuilds_immediately() -> None:
    policy = scanning_policy()
    policy.bluez_changed(5, present=False)
    assert policy.next_step(5).action is Action.WAIT
    policy.bluez_changed(6, present=True)
    assert policy.next_step(6).action is Action.START


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        ScanPolicy(0)
