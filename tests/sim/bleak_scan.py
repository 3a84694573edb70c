"""A plain bleak scanner with no bzlogger code: prints one JSON line per detection.

Usage: python bleak_scan.py SECONDS [FILTERS_JSON]
It finds the (simulated) BlueZ through DBUS_SYSTEM_BUS_ADDRESS like any bleak program.
"""

import asyncio
import json
import sys

from bleak import BleakScanner


async def main(seconds: float, filters: dict) -> None:
    def detected(device, adv) -> None:
        print(json.dumps({
            "address": device.address,
            "name": adv.local_name,
            "rssi": adv.rssi,
            "uuids": adv.service_uuids,
            "manufacturer_data": {str(k): v.hex() for k, v in adv.manufacturer_data.items()},
            "service_data": {k: v.hex() for k, v in adv.service_data.items()},
        }), flush=True)

    async with BleakScanner(detected, bluez={"filters": filters}):
        await asyncio.sleep(seconds)


if __name__ == "__main__":
    asyncio.run(main(float(sys.argv[1]), json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}))
