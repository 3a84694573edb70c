"""What the world hands to the fake bluetoothd's radio: received advertisements and the
GATT databases of the devices that accept connections."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bzlogger.sim.adverts import AdContent

#: The radio does not report advertisements weaker than this.
DEFAULT_SENSITIVITY_DBM = -100


@dataclass(frozen=True, slots=True)
class GattCharacteristicSpec:
    """A characteristic a remote device serves; ``read`` gives its value at read time."""

    uuid: str
    flags: tuple[str, ...]
    read: Callable[[], bytes]


@dataclass(frozen=True, slots=True)
class GattServiceSpec:
    """A primary service of a remote device."""

    uuid: str
    characteristics: tuple[GattCharacteristicSpec, ...]


@dataclass(frozen=True, slots=True)
class Report:
    """One advertisement received by the adapter.

    ``owner`` names the simulated device (a visitor id) for statistics and faults;
    ``gatt`` is its GATT database when it accepts connections.
    """

    address: str
    rssi: int
    content: AdContent
    owner: str = ""
    address_type: str = "random"
    gatt: tuple[GattServiceSpec, ...] | None = None
