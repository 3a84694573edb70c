"""Identifier schemes: Bluezone v3 and GAEN v1.2, pure and deterministic (no I/O)."""
