"""Checkpoint tiers (installed as ``amcheck.storage``): RAM slots, zarr v3 on disk, raw files,
and the transfer service that moves checkpoints between them in the background."""

from __future__ import annotations

from amcheck.storage._ram import ALIGNMENT, RamTier, Slot
from amcheck.storage._tier import Tier

__all__ = ["ALIGNMENT", "RamTier", "Slot", "Tier"]
