"""Where the bundled default rule pack is."""

from __future__ import annotations

from pathlib import Path


def default_pack() -> str:
    """Path of ``hjepa.yaml``, the default H-JEPA rule pack (package data)."""
    return str(Path(__file__).with_name("hjepa.yaml"))
