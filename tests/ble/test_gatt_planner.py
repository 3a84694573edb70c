"""The iOS read planner: caching per slot and address, priority, backoff, caps."""

from __future__ import annotations

from bzlogger.ble.gatt_reader import ReadPlanner, failure_kind
from bzlogger.ble.scanner import IosAdvert
from bzlogger.model import Platform, Protocol

T0 = 1_597_651_200.0  # 2020-08-17T08:00:00Z, a slot start for max 96
ID = bytes(range(12))


def adv(address: str, t: float, rssi: int = -60) -> IosAdvert:
    return IosAdvert(address, f"/org/bluez/hci0/dev_{address}", rssi, t, None)


def test_samples_wait_for_the_read_then_flow_under_the_id() -> None:
    planner = ReadPlanner()
    assert planner.advert(adv("A", T0, -61)) == []
    assert planner.advert(adv("A", T0 + 1, -62)) == []
    job = planner.next_read(T0 + 1)
    assert job is not None and job.address == "A" and job.attempt == 1
    assert planner.next_read(T0 + 1) is None            # in flight: not twice
    flushed = planner.read_ok("A", ID, T0 + 2)
    assert [(s.rssi, s.time) for s in flushed] == [(-61, T0), (-62, T0 + 1)]
    (later,) = planner.advert(adv("A", T0 + 3, -63))
    assert later.identifier == ID and later.rssi == -63
    assert later.protocol is Protocol.BLUEZONE and later.platform is Platform.IOS
    assert planner.next_read(T0 + 3) is None            # cached: no second connection


def test_new_slot_or_new_address_means_a_new_read() -> None:
    planner = ReadPlanner()
    planner.advert(adv("A", T0))
    planner.next_read(T0)
    planner.read_ok("A", ID, T0 + 1)
    assert planner.advert(adv("A", T0 + 899)) != []
    assert planner.advert(adv("A", T0 + 900)) == []      # next slot
    job = planner.next_read(T0 + 900)
    assert job is not None and job.attempt == 1
    planner.advert(adv("B", T0 + 901))                   # rotated address
    job = planner.next_read(T0 + 901)
    assert job is not None and job.address == "B"


def test_closest_phone_first() -> None:
    planner = ReadPlanner()
    planner.advert(adv("far", T0, -90))
    planner.advert(adv("near", T0, -50))
    planner.advert(adv("mid", T0, -70))
    order = []
    while (job := planner.next_read(T0)) is not None:
        order.append(job.address)
    assert order == ["near", "mid", "far"]


def test_backoff_and_cap_per_slot() -> None:
    planner = ReadPlanner(max_attempts=3, backoff_s=5)
    t = T0
    planner.advert(adv("A", t))
    attempts = 0
    for _ in range(50):
        planner.advert(adv("A", t))
        job = planner.next_read(t)
        if job is not None:
            attempts += 1
            planner.read_failed("A", "timeout", t)
        t += 1
    assert attempts == 3
    assert planner.attempts_of("A") == 3
    stats = planner.counters.snapshot()
    assert stats["read_failed.timeout"] == 3 and stats["gave_up"] == 1
    assert stats["samples_unread"] > 0


def test_backoff_doubles() -> None:
    planner = ReadPlanner(max_attempts=10, backoff_s=5)
    planner.advert(adv("A", T0))
    planner.next_read(T0)
    planner.read_failed("A", "failed", T0)
    assert planner.next_due(T0) == T0 + 5
    planner.advert(adv("A", T0 + 5))
    planner.next_read(T0 + 5)
    planner.read_failed("A", "failed", T0 + 5)
    assert planner.next_due(T0 + 5) == T0 + 15


def test_phone_without_the_service_is_left_alone() -> None:
    planner = ReadPlanner()
    planner.advert(adv("A", T0))
    planner.next_read(T0)
    planner.read_failed("A", "no_service", T0)
    for t in range(1, 200):
        planner.advert(adv("A", T0 + t))
        assert planner.next_read(T0 + t) is None


def test_stale_phone_is_not_connected() -> None:
    planner = ReadPlanner()
    planner.advert(adv("A", T0))
    assert planner.next_read(T0 + 60) is None


def test_buffer_and_phone_table_are_bounded() -> None:
    planner = ReadPlanner(buffer=4, max_phones=10)
    for t in range(20):
        planner.advert(adv("A", T0 + t * 0.1))
    planner.next_read(T0 + 2)
    assert len(planner.read_ok("A", ID, T0 + 2)) == 4
    for n in range(50):
        planner.advert(adv(f"P{n}", T0 + 3))
    assert planner.pending() <= 10


def test_read_finishing_after_the_slot_is_not_cached() -> None:
    planner = ReadPlanner()
    planner.advert(adv("A", T0 + 899))
    planner.next_read(T0 + 899)
    assert planner.read_ok("A", ID, T0 + 901) == []
    assert planner.counters.get("reads_late") == 1


def test_failure_kinds() -> None:
    assert failure_kind(TimeoutError()) == "timeout"
    assert failure_kind(ValueError()) == "error"
