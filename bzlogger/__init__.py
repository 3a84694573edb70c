"""bzlogger: a Bluetooth Low Energy contact-logging kiosk for Bluezone and GAEN on BlueZ."""

__version__ = "0.1.0"

#: No real clock reading may be earlier than this (the release date): a Raspberry Pi
#: without an RTC boots in 1970 or at its last shutdown time until NTP has synced.
RELEASE_EPOCH = 1_796_083_200  # 2026-12-01T00:00:00Z
