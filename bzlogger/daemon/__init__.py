"""The ``bzlogger run`` daemon: supervised tasks wired together in asyncio, systemd
notification, clock sanity and the runtime state file that ``bzlogger status`` reads."""
