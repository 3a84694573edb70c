"""The encrypted store: encounters, the kiosk's own keys, exposures (see ``store.py``)."""

from bzlogger.store.store import Store, StoreStats, keyring_path

__all__ = ["Store", "StoreStats", "keyring_path"]
