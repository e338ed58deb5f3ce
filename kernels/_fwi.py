"""Modelling and the FWI gradient: the entry points of :mod:`amcheck.kernels`.

``fwi_gradient`` needs the forward wavefield in reverse order: it runs
:class:`~amcheck.kernels.AcousticForward` and :class:`~amcheck.kernels.AcousticAdjoint` through
``amcheck.Checkpointer`` when the installed amcheck provides it (every strategy and tier of amcheck
is then available), and otherwise through :func:`store_all_sweep`, a plain store-all sweep that
keeps every state in RAM and refuses to start when they do not fit the ``ram`` budget.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from amcheck.kernels._geometry import Geometry
from amcheck.kernels._model import Model
from amcheck.kernels._operators import AcousticAdjoint, AcousticForward

import amcheck
from amcheck._bytes import format_bytes, parse_bytes
from amcheck._errors import BudgetError, InvalidArgumentError

__all__ = ["adjoint_modeling", "forward_modeling", "fwi_gradient", "store_all_sweep"]


def forward_modeling(model: Model, geometry: Geometry, src_data: Any = None) -> np.ndarray:
    """Receiver data of one shot, shape ``(nt, nrec)`` (float64).

    Parameters
    ----------
    model, geometry
        See :class:`Model` and :class:`Geometry`.
    src_data
        Source time functions ``(nt, nsrc)``; default the geometry's Ricker wavelet.
    """
    fwd = AcousticForward(model, geometry, src_data)
    state = fwd.initial_state()
    fwd.advance(state, state, 0, fwd.n_steps)
    return np.array(fwd.data, copy=True)


def adjoint_modeling(model: Model, geometry: Geometry, rec_data: Any) -> np.ndarray:
    """The adjoint of :func:`forward_modeling`: receiver data ``(nt, nrec)`` -> ``(nt, nsrc)``.

    ``<forward_modeling(m, g, s), d> == <s, adjoint_modeling(m, g, d)>`` to round-off.
    """
    fwd = AcousticForward(model, geometry)
    adj = AcousticAdjoint(fwd, gradient=False)
    adj.start(rec_data)
    for t in range(fwd.n_steps - 1, -1, -1):
        adj.reverse(None, t)
    return np.array(adj.src_adjoint, copy=True)


def store_all_sweep(forward: AcousticForward, adjoint_start: Any, reverse: Any) -> None:
    """Forward sweep keeping every state x_0 … x_n, then the reverse sweep n-1 … 0.

    Each step writes into a fresh buffer (``advance(x_t, x_{t+1}, t, t+1)``), as the checkpoint
    engine does for store-all. ``adjoint_start(final_state)`` runs between the sweeps.
    """
    states = [forward.initial_state()]
    for t in range(forward.n_steps):
        nxt = {"u": np.empty_like(states[-1]["u"])}
        forward.advance(states[-1], nxt, t, t + 1)
        states.append(nxt)
    adjoint_start(states[-1])
    for t in range(forward.n_steps - 1, -1, -1):
        view = {"u": states[t]["u"].view()}
        view["u"].flags.writeable = False
        reverse(view, t)
        states.pop()


def fwi_gradient(model: Model, geometry: Geometry, d_obs: Any, ram: int | str = "25%",
                 disk: Any = None, compression: Any = None, strategy: str = "auto"
                 ) -> tuple[float, np.ndarray]:
    """Misfit 0.5 ||d_syn - d_obs||^2 and its exact gradient with respect to m = 1/vp^2.

    Parameters
    ----------
    model, geometry
        The current model and the shot's geometry.
    d_obs
        Observed data, shape ``(nt, nrec)``.
    ram, disk, compression, strategy
        Passed to ``amcheck.Checkpointer`` (RAM budget, disk tier, codec, checkpointing
        strategy). Without a Checkpointer in this amcheck only ``strategy="auto"`` or
        ``"store_all"`` and ``disk=None`` are accepted, and all ``n + 1`` states must fit ``ram``.

    Returns
    -------
    misfit, gradient
        A float and a float64 array of the model's shape (s^2/km^2 per unit misfit).

    Raises
    ------
    InvalidArgumentError
        ``d_obs`` of the wrong shape; see also :class:`Geometry`.
    BudgetError
        (store-all path) the states do not fit ``ram``.
    """
    fwd = AcousticForward(model, geometry)
    obs = np.asarray(d_obs, dtype=np.float64)
    if obs.shape != (geometry.nt, geometry.nrec):
        raise InvalidArgumentError(
            f"d_obs must have shape (nt, nrec) = {(geometry.nt, geometry.nrec)}, got {obs.shape}")
    adj = AcousticAdjoint(fwd, gradient=True)
    checkpointer = getattr(amcheck, "Checkpointer", None)
    if checkpointer is not None:
        ckp = checkpointer(fwd, adj, fwd.initial_state(), fwd.n_steps, ram=ram, disk=disk,
                           compression=compression, strategy=strategy)
        final = ckp.forward()
        adj.start(fwd.data - obs, final)
        ckp.reverse()
    else:
        if strategy not in ("auto", "store_all") or disk is not None or compression is not None:
            raise InvalidArgumentError(
                f"this amcheck has no Checkpointer yet: only strategy='auto'/'store_all' without "
                f"disk or compression is available, got strategy={strategy!r}, disk={disk!r}, "
                f"compression={compression!r}")
        need = (fwd.n_steps + 1) * fwd.spec.nbytes
        budget = parse_bytes(ram, "ram")
        if need > budget:
            raise BudgetError(
                f"store-all needs {format_bytes(need)} for {fwd.n_steps + 1} states, ram allows "
                f"{format_bytes(budget)}")
        store_all_sweep(fwd, lambda final: adj.start(fwd.data - obs, final), adj.reverse)
    misfit = 0.5 * float(np.sum((fwd.data - obs) ** 2))
    return misfit, adj.gradient_m()
