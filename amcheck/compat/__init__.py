"""Adapters for code written against other checkpointing libraries."""

from __future__ import annotations

__all__: list[str] = []
