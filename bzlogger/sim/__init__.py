"""A simulated BlueZ on a private D-Bus, and a world of visitors that it hears.

The daemon under test talks to it through bleak and dbus-fast exactly as it talks to
``bluetoothd`` on a Raspberry Pi; see ``docs/simulator.md``. Entry point for tests and
the demo: :class:`bzlogger.sim.runner.SimulatedBluez`.
"""
