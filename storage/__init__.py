"""Checkpoint tiers (installed as ``amcheck.storage``): RAM slots, zarr v3 on disk, raw files,
and the transfer service that moves checkpoints between them in the background.

``import amcheck.storage`` does not import zarr: :class:`ZarrTier` and the codec parsing import
it when first used.
"""

from __future__ import annotations

from amcheck.storage._codecs import Compression, CompressionLike, parse_compression
from amcheck.storage._ram import ALIGNMENT, RamTier, Slot, slot_layout
from amcheck.storage._raw import RawTier
from amcheck.storage._tier import Tier
from amcheck.storage._transfer import EventHook, TransferFuture, TransferService, codec_executor
from amcheck.storage._zarr import ZarrTier

__all__ = [
    "ALIGNMENT",
    "Compression",
    "CompressionLike",
    "EventHook",
    "RamTier",
    "RawTier",
    "Slot",
    "Tier",
    "TransferFuture",
    "TransferService",
    "ZarrTier",
    "codec_executor",
    "parse_compression",
    "slot_layout",
]
