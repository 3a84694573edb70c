"""Supervised parts: restart with backoff, visible errors, unhealthy when failing."""

from __future__ import annotations

import asyncio

from bzlogger.daemon.supervisor import BackoffPolicy, Supervisor, TaskState, describe


class FakeTime:
    def __init__(self) -> None:
        self.mono = 0.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.mono

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.mono += seconds
        await asyncio.sleep(0)


def test_backoff_doubles_and_caps() -> None:
    policy = BackoffPolicy(initial=1, maximum=10)
    assert [policy.delay(n) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]


async def test_a_failing_part_is_restarted_and_others_keep_running() -> None:
    fake = FakeTime()
    sup = Supervisor(BackoffPolicy(initial=1, maximum=8, unhealthy_after=3),
                     monotonic=fake.monotonic, sleep=fake.sleep, wall=lambda: 1000.0)
    attempts = 0
    steady = asyncio.Event()

    async def flaky() -> None:
        nonlocal attempts
        attempts += 1
        if attempts <= 2:
            raise RuntimeError(f"boom {attempts}\nsecond line")
        await asyncio.Event().wait()

    async def stable() -> None:
        steady.set()
        await asyncio.Event().wait()

    sup.add("flaky", flaky)
    sup.add("stable", stable)
    sup.start()
    for _ in range(50):
        await asyncio.sleep(0)
    assert steady.is_set()
    assert attempts == 3
    assert fake.sleeps == [1, 2]
    flaky_status = sup.statuses()[0]
    assert flaky_status.state is TaskState.RUNNING
    assert flaky_status.restarts == 2
    assert flaky_status.last_error == "RuntimeError: boom 2"
    assert [e.message for e in sup.errors()] == ["RuntimeError: boom 1", "RuntimeError: boom 2"]
    assert sup.healthy()
    await sup.stop()
    assert all(s.state is TaskState.STOPPED for s in sup.statuses())


async def test_a_part_that_keeps_failing_makes_the_daemon_unhealthy() -> None:
    fake = FakeTime()
    sup = Supervisor(BackoffPolicy(initial=1, maximum=4, unhealthy_after=3),
                     monotonic=fake.monotonic, sleep=fake.sleep)

    async def broken() -> None:
        raise OSError("adapter gone")

    sup.add("scanner", broken)
    sup.start()
    for _ in range(20):
        await asyncio.sleep(0)
    assert not sup.healthy()
    assert sup.unhealthy_parts() == ["scanner"]
    assert fake.sleeps[:4] == [1, 2, 4, 4]
    await sup.stop()


async def test_a_part_that_returns_is_restarted_too() -> None:
    fake = FakeTime()
    sup = Supervisor(monotonic=fake.monotonic, sleep=fake.sleep)
    runs = 0

    async def quits() -> None:
        nonlocal runs
        runs += 1
        if runs > 1:
            await asyncio.Event().wait()

    sup.add("quitter", quits)
    sup.start()
    for _ in range(10):
        await asyncio.sleep(0)
    assert runs == 2
    assert sup.statuses()[0].last_error == "stopped unexpectedly"
    await sup.stop()


async def test_a_long_stable_run_resets_the_backoff() -> None:
    fake = FakeTime()
    sup = Supervisor(BackoffPolicy(initial=1, stable_after=100, unhealthy_after=2),
                     monotonic=fake.monotonic, sleep=fake.sleep)
    runs = 0

    async def fails_after_a_while() -> None:
        nonlocal runs
        runs += 1
        if runs >= 4:
            await asyncio.Event().wait()
        fake.mono += 500  # ran a long time before failing
        raise RuntimeError("hiccup")

    sup.add("part", fails_after_a_while)
    sup.start()
    for _ in range(30):
        await asyncio.sleep(0)
    assert fake.sleeps == [1, 1, 1]
    assert sup.healthy()
    await sup.stop()


def test_error_messages_never_carry_macs_or_identifiers() -> None:
    error = OSError("D-Bus connection lost (/org/bluez/hci0/dev_7E_0D_DC_D6_35_CB), "
                    "peer 7e:0d:dc:d6:35:cb, id 137cb9f4ad3ac5623f197309")
    text = describe(error)
    assert "7E_0D" not in text and "7e:0d" not in text and "137cb9" not in text
    assert text.count("<redacted>") == 3
    assert describe(RuntimeError("timeout after 10 s")) == "RuntimeError: timeout after 10 s"
    sup = Supervisor(wall=lambda: 0.0)
    sup.record_error("scanner", "device AA:BB:CC:DD:EE:FF gone")
    assert sup.errors()[0].message == "device <redacted> gone"
