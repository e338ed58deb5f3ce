"""Adapters for code written against other checkpointing libraries.

- :mod:`amcheck.compat.pyrevolve`: ``Revolver`` for operators that own their state and expose
  ``apply(t_start, t_end)``, as with pyrevolve and Devito (copies are unavoidable there; they are
  counted).
"""

from __future__ import annotations

__all__: list[str] = ["pyrevolve"]
