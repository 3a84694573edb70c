"""The encrypted store: encounters, the kiosk's own keys, exposures (see ``store.py``)."""

from bzlogger.store.opening import keyring_path
from bzlogger.store.stats import StoreStats
from bzlogger.store.store import Store

__all__ = ["Store", "StoreStats", "keyring_path"]
