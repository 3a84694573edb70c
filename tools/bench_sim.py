"""Benchmark the simulated BlueZ under a busy scenario: D-Bus messages per real second
seen by a scanning client, reports delivered, world tick lag, CPU used.

    .venv/bin/python tools/bench_sim.py [--scenario tools/scenarios/busy_morning.toml]
        [--speed 240] [--seconds 20] [--filter worst|bleak]

``worst`` scans with RSSI=-127 and DuplicateData=true (every report becomes a signal);
``bleak`` uses bleak's default filter (Transport=le, DuplicateData=false).
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import time
from pathlib import Path

from dbus_fast import Message, MessageType, Variant
from dbus_fast.aio import MessageBus

from bzlogger.sim.runner import SimulatedBluez
from bzlogger.sim.scenario import load_scenario

FILTERS = {
    "worst": {"Transport": Variant("s", "le"), "RSSI": Variant("n", -127),
              "DuplicateData": Variant("b", True)},
    "bleak": {"Transport": Variant("s", "le"), "DuplicateData": Variant("b", False)},
}


async def main(args: argparse.Namespace) -> None:
    scenario = load_scenario(args.scenario)
    async with SimulatedBluez.start(scenario, speed=args.speed) as sim:
        bus = await MessageBus(bus_address=sim.bus_address).connect()
        per_second: dict[int, int] = {}
        started = time.monotonic()

        def count(msg: Message) -> None:
            if msg.message_type == MessageType.SIGNAL:
                second = int(time.monotonic() - started)
                per_second[second] = per_second.get(second, 0) + 1

        bus.add_message_handler(count)
        await bus.call(Message(destination="org.freedesktop.DBus", path="/org/freedesktop/DBus",
                               interface="org.freedesktop.DBus", member="AddMatch",
                               signature="s", body=["type='signal',sender='org.bluez'"]))
        for member, signature, body in (("SetDiscoveryFilter", "a{sv}", [FILTERS[args.filter]]),
                                        ("StartDiscovery", "", [])):
            await bus.call(Message(destination="org.bluez", path="/org/bluez/hci0",
                                   interface="org.bluez.Adapter1", member=member,
                                   signature=signature, body=body))
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        await asyncio.sleep(args.seconds)
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        stats = sim.bluez.stats
        busiest = max(per_second.values(), default=0)
        total = sum(per_second.values())
        cpu = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)
        print(f"scenario {scenario.name} at {args.speed:g}x for {args.seconds:g} s real "
              f"({args.seconds * args.speed / 60:.0f} min scenario), filter {args.filter}")
        print(f"  reports delivered     {stats.reports} ({stats.reports / args.seconds:.0f}/s)")
        print(f"  D-Bus signals         {total} (mean {total / args.seconds:.0f}/s, "
              f"busiest second {busiest})")
        print(f"  devices added/removed {stats.devices_added}/{stats.devices_removed}")
        print(f"  world ticks           {sim.ticks}, max lag {sim.max_tick_lag_s * 1000:.0f} ms")
        print(f"  CPU (sim + client)    {cpu:.2f} s ({100 * cpu / args.seconds:.0f} % of one core)")
        bus.disconnect()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default=str(Path(__file__).parent / "scenarios"
                                                  / "busy_morning.toml"))
    parser.add_argument("--speed", type=float, default=240.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--filter", choices=sorted(FILTERS), default="worst")
    asyncio.run(main(parser.parse_args()))
