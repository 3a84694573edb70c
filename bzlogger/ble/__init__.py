"""The BLE edge: advertisement parsing, the bleak scanner, the BlueZ advertiser, and
their recovery from bluetoothd, adapter and bus faults."""
