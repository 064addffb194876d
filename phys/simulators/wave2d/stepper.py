"""The torch time stepper of :class:`~phys.simulators.wave2d.Wave2D` and its hand-written
adjoint, wrapped as an autograd function.

One leapfrog step of the damped wave equation (see the package docstring) is

    u[n+1] = 2k u[n] - (1 - b dt) k u[n-1] + k (c dt / h)^2 (N u[n] - 4 u[n]) + s[n],

with ``k = 1 / (1 + b dt)``, ``N u`` the sum of the four neighbours and ``s[n]`` the
source term. Gradients come from the time-reversed transposed scheme, checkpointed for a
nonlinear medium so memory grows as ``sqrt(n_steps)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

#: ``(u[n-1], u[n])`` buffers saved before step ``n``.
Checkpoint = tuple[torch.Tensor, torch.Tensor]
#: Per-step ``(g, h)`` coefficients of the nonlinear adjoint, ``(B, M)`` each.
Store = tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]
#: ``update(n, out, u, s)``: writes step ``n``'s new field over ``out`` (see ``march``).
Update = Callable[[int, torch.Tensor, torch.Tensor, torch.Tensor], None]


def _flat_interior(field: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A ``(Nx, Ny)`` map on the flat padded layout of :class:`_Stepper`, zero on the halo.

    Shape: ``(Nx, Ny)`` -> ``(M,)`` with ``M = (Nx + 2) * (Ny + 2) - 2 * (Ny + 2) - 2``.
    """
    w = field.shape[1] + 2
    padded = F.pad(field.to(torch.float64), (1, 1, 1, 1)).flatten()
    return padded[w + 1:padded.numel() - w - 1].to(dtype).contiguous()


class _Stepper:
    """Leapfrog time stepping of a batch of fields, with its adjoint.

    A batch of fields is held as ``(B, P)`` buffers: each row is the ``(Nx + 2, Ny + 2)``
    grid with a zero halo, flattened. Every update touches the flat range
    ``[W + 1, P - W - 1)`` (``W = Ny + 2``) of length ``M``, so the four neighbours are the
    same range shifted by ``+-1`` and ``+-W``: plain slices, no padding or convolution per
    step. Coefficients are ``(M,)`` vectors that vanish on the halo columns, which keeps
    the halo at zero (and, in the adjoint, keeps it from feeding back into the grid).

    The state is a pair of buffers ``(u[n-1], u[n])``; a step writes ``u[n+1]`` over
    ``u[n-1]`` in place, so a forward pass allocates nothing per step.
    """

    def __init__(self, kappa: torch.Tensor, damp: torch.Tensor, chat: torch.Tensor, cnl_hat: float,
                 sources: torch.Tensor, probes: torch.Tensor, dtype: torch.dtype) -> None:
        nx, ny = kappa.shape
        self.shape = (nx, ny)
        self.w = ny + 2
        self.p = (nx + 2) * self.w
        self.m = self.p - 2 * self.w - 2
        self.dtype = dtype
        #: Where the fields live: the torch device of the coefficient maps.
        self.device = kappa.device
        self.cnl_hat = float(cnl_hat)
        kappa64, chat64 = kappa.double(), chat.double()

        def flat(field: torch.Tensor) -> torch.Tensor:
            return _flat_interior(field, dtype)

        # linear: u+ = a_lin u + bc u- + c_lin (N u)
        self.bc = flat(-(1 - damp.double()) * kappa64)  # damp = b dt
        self.c_lin = flat(kappa64 * chat64**2)
        self.a_lin = flat(2 * kappa64 - 4 * kappa64 * chat64**2)
        # nonlinear: u+ = a2 u + bc u- + kappa q^2 (N u - 4 u), q = chat + cnl_hat u^2
        self.a2 = flat(2 * kappa64)
        self.kappa = flat(kappa64)
        self.chat = flat(chat64)
        self.m4k = flat(-4 * kappa64)
        self.sources = self._flat_index(sources)
        self.probes = self._flat_index(probes)

    @property
    def linear(self) -> bool:
        return self.cnl_hat == 0.0

    def _flat_index(self, cells: torch.Tensor) -> torch.Tensor:
        return ((cells[:, 0] + 1) * self.w + cells[:, 1] + 1).long()

    def zeros(self, batch: int) -> torch.Tensor:
        return torch.zeros(batch, self.p, dtype=self.dtype, device=self.device)

    def interior(self, buf: torch.Tensor) -> torch.Tensor:
        return buf[:, self.w + 1:self.p - self.w - 1]

    def views(self, buf: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(left, right, up, down, centre, buffer): the stencil's views of one buffer."""
        w, p = self.w, self.p
        return (buf[:, w:p - w - 2], buf[:, w + 2:p - w], buf[:, 1:p - 2 * w - 1],
                buf[:, 2 * w + 1:p - 1], buf[:, w + 1:p - w - 1], buf)

    def pad(self, field: torch.Tensor) -> torch.Tensor:
        """``(B, Nx, Ny)`` fields -> ``(B, P)`` buffer with a zero halo."""
        return F.pad(field.to(self.dtype), (1, 1, 1, 1)).flatten(1).contiguous()

    def unpad(self, buf: torch.Tensor) -> torch.Tensor:
        """``(B, P)`` buffer -> ``(B, Nx, Ny)`` fields."""
        nx, ny = self.shape
        return buf.view(-1, nx + 2, ny + 2)[:, 1:-1, 1:-1].clone()

    # -- forward ------------------------------------------------------------------------
    def march(self, prev: torch.Tensor, cur: torch.Tensor, start: int, stop: int, *,
              drive: tuple[torch.Tensor, ...] = (), record: tuple[torch.Tensor, ...] = (),
              linear: bool | None = None, checkpoints: list[Checkpoint] | None = None,
              every: int = 0, store: Store | None = None,
              monitor: Callable[[torch.Tensor], None] | None = None,
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """Run steps ``start .. stop - 1`` in place; returns the buffers ``(u[stop-1], u[stop])``.

        Step ``n`` computes ``u[n+1]`` from ``(u[n-1], u[n]) = (prev, cur)``, adds
        ``drive[n]`` (``(B, n_sources)``, when ``n < len(drive)``) at the sources and
        writes the field at the probes into ``record[n]`` (``(B, n_probes)``, when given).

        Args:
            linear: Use the linear update (``c_nl`` ignored); default: the stepper's own.
            checkpoints: When given, copies of ``(prev, cur)`` are appended before every
                step ``n`` with ``n % every == 0``.
            store: ``(g, h)`` per-step outputs for the adjoint (nonlinear only): the
                ``(B, M)`` coefficients ``g[n - start] = k q^2`` and
                ``h[n - start] = d u[n+1] / d u[n]`` without the neighbour term.
            monitor: Called with the interior of ``u[n+1]`` after each step.
        """
        linear = self.linear if linear is None else linear
        s = torch.empty(cur.shape[0], self.m, dtype=self.dtype, device=self.device)
        update = self._linear_update() if linear else self._kerr_update(s, start, store)
        one, two = self.views(cur), self.views(prev)
        src, prb, n_drive = self.sources, self.probes, len(drive)
        for n in range(start, stop):
            if checkpoints is not None and n % every == 0:
                checkpoints.append((two[5].clone(), one[5].clone()))
            left, right, up, down, centre, _ = one
            out, buf = two[4], two[5]
            torch.add(left, right, out=s)
            s.add_(up)
            s.add_(down)
            update(n, out, centre, s)
            if n < n_drive:
                buf.index_add_(1, src, drive[n])
            if record:
                torch.index_select(buf, 1, prb, out=record[n])
            if monitor is not None:
                monitor(out)
            one, two = two, one
        return two[5], one[5]

    def _linear_update(self) -> Update:
        """``update(n, out, u, s)``: ``out <- bc out + a u + c s``, ``s`` the neighbour sum
        of ``u``: a linear step with ``out`` holding ``u[n-1]``."""
        bc, a, c = self.bc, self.a_lin, self.c_lin

        def update(n: int, out: torch.Tensor, centre: torch.Tensor, s: torch.Tensor) -> None:
            out.mul_(bc)
            out.addcmul_(a, centre)
            out.addcmul_(c, s)

        return update

    def _kerr_update(self, like: torch.Tensor, start: int, store: Store | None) -> Update:
        """Like :meth:`_linear_update` for the nonlinear medium: ``out <- bc out + 2k u +
        k q^2 (s - 4 u)``, ``q = chat + cnl_hat u^2``; ``s`` is overwritten. With ``store``,
        also writes the adjoint's coefficients of step ``n`` (see :meth:`march`)."""
        bc, a, kappa, chat, m4k = self.bc, self.a2, self.kappa, self.chat, self.m4k
        cnl = self.cnl_hat
        q = torch.empty_like(like)
        g_tmp = torch.empty_like(like)

        def update(n: int, out: torch.Tensor, centre: torch.Tensor, s: torch.Tensor) -> None:
            out.mul_(bc)
            s.add_(centre, alpha=-4.0)  # N u - 4 u
            torch.addcmul(chat, centre, centre, value=cnl, out=q)  # q = c dt / h
            g = g_tmp if store is None else store[0][n - start]
            torch.mul(q, q, out=g)
            g.mul_(kappa)
            out.addcmul_(a, centre)
            out.addcmul_(g, s)
            if store is not None:
                hn = store[1][n - start]
                torch.addcmul(q, centre, s, value=-cnl, out=hn)
                hn.mul_(q)
                torch.addcmul(a, m4k, hn, out=hn)

        return update

    def forward(self, drive: torch.Tensor, n_steps: int, every: int = 0,
                ) -> tuple[torch.Tensor, list[Checkpoint]]:
        """Field at the probes for every step, from rest.

        Shape: ``drive (n_drive, B, n_sources)`` -> ``(n_steps, B, n_probes)``; with
        ``every > 0`` also the checkpoints ``(u[n-1], u[n])`` for ``n = 0, every, ...``.
        """
        batch = drive.shape[1]
        record = torch.empty(n_steps, batch, len(self.probes), dtype=self.dtype, device=self.device)
        checkpoints: list[Checkpoint] = []
        self.march(self.zeros(batch), self.zeros(batch), 0, n_steps,
                   drive=drive.to(self.dtype).unbind(0), record=record.unbind(0),
                   checkpoints=checkpoints if every > 0 else None, every=every)
        return record, checkpoints

    # -- adjoint ------------------------------------------------------------------------
    def adjoint(self, grad_record: torch.Tensor, n_drive: int,
                checkpoints: list[Checkpoint], every: int,
                drive: torch.Tensor) -> torch.Tensor:
        """Gradient of the loss with respect to the drive, given its gradient at the probes.

        With ``lam[m] = dL / du[m]``, the adjoint runs backward in time:
        ``lam[m] = P^T g[m-1] + J[m]^T lam[m+1] + bc * lam[m+2]``, where ``J[m]`` is the
        derivative of step ``m`` with respect to ``u[m]`` and ``P`` reads the probes; the
        drive gradient is ``lam[n+1]`` at the sources. ``J^T v = h v + N(g v)`` with the
        coefficients ``g``, ``h`` of :meth:`march`: constants for a linear medium; for a
        nonlinear one they are recomputed chunk by chunk (``every`` steps) from the
        forward checkpoints, so memory stays at ``O(n_steps / every + every)`` fields.

        Shape: ``grad_record (n_steps, B, n_probes)`` -> ``(n_drive, B, n_sources)``.
        """
        n_steps, batch = grad_record.shape[0], grad_record.shape[1]
        grad_record = grad_record.to(self.dtype).contiguous()
        grad_drive = torch.zeros(n_drive, batch, len(self.sources), dtype=self.dtype,
                                 device=self.device)
        step = self._adjoint_step(grad_record, grad_drive)
        step(n_steps, None, None)  # lam[T] = P^T g[T-1]
        if self.linear:
            for m in range(n_steps - 1, 0, -1):
                step(m, self.c_lin, self.a_lin)
            return grad_drive
        drive_steps = drive.to(self.dtype).unbind(0)
        chunk = max(every, 1)
        g_store = torch.empty(chunk, batch, self.m, dtype=self.dtype, device=self.device)
        h_store = torch.empty_like(g_store)
        g_steps, h_steps = g_store.unbind(0), h_store.unbind(0)
        for first in range((n_steps - 1) // chunk * chunk, -1, -chunk):
            last = min(first + chunk, n_steps)  # recompute steps first .. last - 1
            prev, cur = (t.clone() for t in checkpoints[first // chunk])
            self.march(prev, cur, first, last, drive=drive_steps, store=(g_steps, h_steps))
            for m in range(last - 1, max(first, 1) - 1, -1):
                step(m, g_steps[m - first], h_steps[m - first])
        return grad_drive


    def _adjoint_step(self, grad_record: torch.Tensor, grad_drive: torch.Tensor,
                      ) -> Callable[[int, torch.Tensor | None, torch.Tensor | None], None]:
        """``step(m, g, h)``: one adjoint step, ``lam[m] = P^T grad_record[m-1] +
        h lam[m+1] + N(g lam[m+1]) + bc lam[m+2]`` (no Jacobian term when ``g`` is
        ``None``), which also writes ``lam[m]`` at the sources into ``grad_drive[m-1]``."""
        batch, n_drive = grad_record.shape[1], grad_drive.shape[0]
        g_rec, g_drv = grad_record.unbind(0), grad_drive.unbind(0)
        # (interior, buffer) of lam[m + 1] and of lam[m + 2], which lam[m] overwrites
        lam = [(self.interior(b), b) for b in (self.zeros(batch), self.zeros(batch))]
        weighted = self.zeros(batch)  # g * lam[m + 1] with a zero halo, for the neighbour sum
        wl, wr, wu, wd, w_in, _ = self.views(weighted)
        s = torch.empty(batch, self.m, dtype=self.dtype, device=self.device)
        src, prb, bc = self.sources, self.probes, self.bc

        def step(m: int, g: torch.Tensor | None, h: torch.Tensor | None) -> None:
            (lam_in, _), (out, buf) = lam
            if g is not None:
                torch.mul(g, lam_in, out=w_in)
                torch.add(wl, wr, out=s)
                s.add_(wu)
                s.add_(wd)
                out.mul_(bc)
                out.addcmul_(h, lam_in)
                out.add_(s)
            buf.index_add_(1, prb, g_rec[m - 1])
            if m - 1 < n_drive:
                torch.index_select(buf, 1, src, out=g_drv[m - 1])
            lam.reverse()

        return step

class _WaveFunction(torch.autograd.Function):
    """Drive ``(n_drive, B, n_sources)`` -> probe field ``(n_steps, B, n_probes)``, with the
    hand-written checkpointed adjoint of :meth:`_Stepper.adjoint` as its backward."""

    @staticmethod
    def forward(ctx: Any, drive: torch.Tensor, stepper: _Stepper, n_steps: int,
                every: int) -> torch.Tensor:
        every = 0 if stepper.linear else every
        record, checkpoints = stepper.forward(drive.detach(), n_steps, every)
        ctx.stepper, ctx.every, ctx.checkpoints = stepper, every, checkpoints
        ctx.save_for_backward(drive)
        return record.to(drive.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_record: torch.Tensor) -> tuple[torch.Tensor, None, None, None]:
        (drive,) = ctx.saved_tensors
        grad = ctx.stepper.adjoint(grad_record, drive.shape[0], ctx.checkpoints, ctx.every,
                                   drive.detach())
        return grad.to(drive.dtype), None, None, None

