"""The pure core: deterministic logic with time passed in and no I/O."""
