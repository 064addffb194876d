"""Two-dimensional scalar wave simulator: an acoustic (or optical) wave-based recurrent device.

A scalar field ``u(x, y, t)`` obeys the damped wave equation (as in wavetorch, Hughes et
al., Sci. Adv. 2019)

    u_tt + 2 b(x, y) u_t = c(x, y, u)^2 laplacian(u) + f(x, y, t),
    c = c_lin(x, y) + c_nl * u^2,

on an ``Nx x Ny`` grid of spacing ``h`` with zero (Dirichlet) values just outside it. The
time derivatives are central differences with step ``dt`` (leapfrog), the Laplacian is
the 5-point stencil, so one step is

    u[n+1] = 2k u[n] - (1 - b dt) k u[n-1] + k (c dt / h)^2 (N u[n] - 4 u[n]) + s[n],
    k = 1 / (1 + b dt),

with ``N u`` the sum of the four neighbours and ``s[n]`` the source term. It is stable
when ``dt <= h / (c_max sqrt(2))`` (CFL). A graded absorbing layer,
``b = pml_sigma * (d / pml)^pml_order`` at depth ``d`` cells into a frame ``pml`` cells
wide, swallows waves that leave the interior. ``c_lin`` is a fixed map drawn from
``seed``: slow circular scatterers, a slow biconvex lens, or a homogeneous medium.

Units are SI for an acoustic rig: ``c`` in m/s, ``h`` in m, ``dt`` in s, ``f0`` in Hz;
defaults describe sound in air. The field is in normalised units: the sources are scaled
so that the *linear* field never exceeds 1 in magnitude for any input in range (see
:class:`Wave2D`), so ``c_nl`` (m/s) is the largest speed change the linear field can
cause. Geometric sizes of scatterers are in grid cells.

Inputs drive ``n_sources`` point sources; each of the ``n_out`` probes reports the
time-averaged intensity ``(1 / t_window) * integral u^2 dt`` over the simulation window
``t_window = n_steps * dt``.

Gradients with respect to the inputs come from a hand-written adjoint (the time-reversed
transposed scheme) instead of autograd through every step: exact, and for a nonlinear
medium checkpointed (fields saved every ``checkpoint_every`` steps, chunks recomputed in
the backward pass), so memory grows as ``sqrt(n_steps)`` rather than ``n_steps``. Time
stepping runs in small C loops compiled on first use when a C compiler is available (one
pass over the fields per step instead of six to ten torch kernels), else in torch.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import functools
import math
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from phys.device import DeviceInfo, validate_batch
from phys.simulators.base import Simulator

__all__ = ["Wave2D"]

MEDIA = ("scatterers", "lens", "homogeneous")
INPUT_MODES = ("pulse", "waveform")
PLACEMENTS = ("line", "random")
GRADIENTS = ("adjoint", "autograd")
BACKENDS = ("auto", "native", "torch")

#: Cells between the absorbing layer and the source / probe lines.
EDGE_GAP = 2
#: Default carrier wavelength in grid cells of the background medium.
CELLS_PER_WAVELENGTH = 12.0
#: Default time step as a fraction of the CFL limit.
COURANT = 0.9
#: Default round-trip amplitude attenuation through the absorbing layer at normal
#: incidence, ``exp(-2 integral b dx / c)``; sets the default ``pml_sigma``. Stronger
#: damping reflects more from the damping gradient itself (about 2 % at 20 cells).
ABSORB_TARGET = 1e-2


# -- the time stepper ------------------------------------------------------------------------

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
        return torch.zeros(batch, self.p, dtype=self.dtype)

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
              linear: bool | None = None,
              checkpoints: list[tuple[torch.Tensor, torch.Tensor]] | None = None,
              every: int = 0,
              store: tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]] | None = None,
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
        batch = cur.shape[0]
        s = torch.empty(batch, self.m, dtype=self.dtype)
        one, two = self.views(cur), self.views(prev)
        src, prb, n_drive = self.sources, self.probes, len(drive)
        if linear:
            bc, a, c = self.bc, self.a_lin, self.c_lin
        else:
            bc, a, kappa, chat, m4k = self.bc, self.a2, self.kappa, self.chat, self.m4k
            cnl = self.cnl_hat
            q = torch.empty_like(s)
            g_tmp = torch.empty_like(s)
        for n in range(start, stop):
            if checkpoints is not None and n % every == 0:
                checkpoints.append((two[5].clone(), one[5].clone()))
            left, right, up, down, centre, _ = one
            out, buf = two[4], two[5]
            torch.add(left, right, out=s)
            s.add_(up)
            s.add_(down)
            out.mul_(bc)
            if linear:
                out.addcmul_(a, centre)
                out.addcmul_(c, s)
            else:
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
            if n < n_drive:
                buf.index_add_(1, src, drive[n])
            if record:
                torch.index_select(buf, 1, prb, out=record[n])
            if monitor is not None:
                monitor(out)
            one, two = two, one
        return two[5], one[5]

    def forward(self, drive: torch.Tensor, n_steps: int, every: int = 0,
                ) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        """Field at the probes for every step, from rest.

        Shape: ``drive (n_drive, B, n_sources)`` -> ``(n_steps, B, n_probes)``; with
        ``every > 0`` also the checkpoints ``(u[n-1], u[n])`` for ``n = 0, every, ...``.
        """
        batch = drive.shape[1]
        record = torch.empty(n_steps, batch, len(self.probes), dtype=self.dtype)
        checkpoints: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.march(self.zeros(batch), self.zeros(batch), 0, n_steps,
                   drive=drive.to(self.dtype).unbind(0), record=record.unbind(0),
                   checkpoints=checkpoints if every > 0 else None, every=every)
        return record, checkpoints

    # -- adjoint ------------------------------------------------------------------------
    def adjoint(self, grad_record: torch.Tensor, n_drive: int,
                checkpoints: list[tuple[torch.Tensor, torch.Tensor]], every: int,
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
        grad_drive = torch.zeros(n_drive, batch, len(self.sources), dtype=self.dtype)
        g_rec, g_drv = grad_record.unbind(0), grad_drive.unbind(0)
        # (interior, buffer) of lam[m + 1] and of lam[m + 2], which lam[m] overwrites
        lam = [(self.interior(b), b) for b in (self.zeros(batch), self.zeros(batch))]
        weighted = self.zeros(batch)  # g * lam[m + 1] with a zero halo, for the neighbour sum
        wl, wr, wu, wd, w_in, _ = self.views(weighted)
        s = torch.empty(batch, self.m, dtype=self.dtype)
        src, prb, bc = self.sources, self.probes, self.bc

        def step(m: int, g: torch.Tensor | None, h: torch.Tensor | None) -> None:
            """lam[m] = P^T g[m-1] + h lam[m+1] + N(g lam[m+1]) + bc lam[m+2]."""
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

        step(n_steps, None, None)  # lam[T] = P^T g[T-1]
        if self.linear:
            for m in range(n_steps - 1, 0, -1):
                step(m, self.c_lin, self.a_lin)
            return grad_drive
        drive_steps = drive.to(self.dtype).unbind(0)
        chunk = max(every, 1)
        g_store = torch.empty(chunk, batch, self.m, dtype=self.dtype)
        h_store = torch.empty_like(g_store)
        g_steps, h_steps = g_store.unbind(0), h_store.unbind(0)
        for first in range((n_steps - 1) // chunk * chunk, -1, -chunk):
            last = min(first + chunk, n_steps)  # recompute steps first .. last - 1
            prev, cur = (t.clone() for t in checkpoints[first // chunk])
            self.march(prev, cur, first, last, drive=drive_steps, store=(g_steps, h_steps))
            for m in range(last - 1, max(first, 1) - 1, -1):
                step(m, g_steps[m - first], h_steps[m - first])
        return grad_drive


# -- native kernels ----------------------------------------------------------------------------
#
# The torch stepper above needs six to ten full passes over the fields per step, each a
# separate kernel; these C loops do one, with the whole time loop in one call per batch
# chunk. They implement exactly the same updates (same layout, same coefficients) and are
# compiled on first use with the system C compiler; without one, Wave2D falls back to torch.

_KERNEL_SOURCE = r"""
#include <string.h>
typedef long long i64;

/* One step for one sample, over the interior (pointers at flat index W + 1):
   o = bc pv + a u + c (N u)                                   (linear), or
   o = bc pv + a u + c q^2 (N u - 4 u), q = chat + cnl u^2     (nonlinear: a = 2k, c = k),
   with pv = o (in place) when pv is 0. Separate loops keep every case free of aliasing,
   so that each vectorises. */
#define LINEAR_SFX(PV) \
    o[i] = bc[i] * (PV) + a[i] * u[i] + c[i] * (u[i - 1] + u[i + 1] + u[i - W] + u[i + W])
#define KERR_SFX(PV) do { \
        REAL lap = u[i - 1] + u[i + 1] + u[i - W] + u[i + W] - 4 * u[i]; \
        REAL q = chat[i] + cnl * u[i] * u[i]; \
        o[i] = bc[i] * (PV) + a[i] * u[i] + c[i] * q * q * lap; \
    } while (0)
static void step_SFX(i64 W, i64 M, int linear, const REAL* restrict bc,
                     const REAL* restrict a, const REAL* restrict c, const REAL* restrict chat,
                     REAL cnl, const REAL* restrict pv, const REAL* restrict u,
                     REAL* restrict o) {
    if (linear && pv)
        for (i64 i = 0; i < M; ++i) LINEAR_SFX(pv[i]);
    else if (linear)
        for (i64 i = 0; i < M; ++i) LINEAR_SFX(o[i]);
    else if (pv)
        for (i64 i = 0; i < M; ++i) KERR_SFX(pv[i]);
    else
        for (i64 i = 0; i < M; ++i) KERR_SFX(o[i]);
}

/* Steps start..stop-1 in place for samples b0..b1-1; see _Stepper.march.
   prev, cur: (B, P); drive: (n_drive, B, n_src); record: (T, B, n_prb) or 0;
   ckpt: (n_ckpt, 2, B, P) or 0, filled before every step n with n % every == 0. */
void march_SFX(i64 B, i64 b0, i64 b1, i64 W, i64 P, i64 start, i64 stop, int linear,
               const REAL* bc, const REAL* a, const REAL* c, const REAL* chat, REAL cnl,
               REAL* prev_all, REAL* cur_all, i64 n_src, const i64* src, i64 n_drive,
               const REAL* drive, i64 n_prb, const i64* prb, REAL* record,
               i64 every, REAL* ckpt) {
    const i64 M = P - 2 * W - 2;
    for (i64 b = b0; b < b1; ++b) {
        REAL* prev = prev_all + b * P;
        REAL* cur = cur_all + b * P;
        for (i64 n = start; n < stop; ++n) {
            if (ckpt && n % every == 0) {
                REAL* dst = ckpt + ((n / every) * 2 * B + b) * P;
                memcpy(dst, prev, P * sizeof(REAL));
                memcpy(dst + B * P, cur, P * sizeof(REAL));
            }
            step_SFX(W, M, linear, bc, a, c, chat, cnl, 0, cur + W + 1, prev + W + 1);
            if (n < n_drive)
                for (i64 k = 0; k < n_src; ++k) prev[src[k]] += drive[(n * B + b) * n_src + k];
            if (record)
                for (i64 k = 0; k < n_prb; ++k) record[(n * B + b) * n_prb + k] = prev[prb[k]];
            REAL* t = prev; prev = cur; cur = t;
        }
    }
}

/* Fields u[start-1 .. stop] of samples b0..b1-1 into tape (stop - start + 2, B, P), from
   the state (u[start-1], u[start]) in ck_prev, ck_cur (B, P). The tape's halo must be 0. */
void tape_SFX(i64 B, i64 b0, i64 b1, i64 W, i64 P, i64 start, i64 stop, int linear,
              const REAL* bc, const REAL* a, const REAL* c, const REAL* chat, REAL cnl,
              const REAL* ck_prev, const REAL* ck_cur, REAL* tape,
              i64 n_src, const i64* src, i64 n_drive, const REAL* drive) {
    const i64 M = P - 2 * W - 2;
    for (i64 b = b0; b < b1; ++b) {
        memcpy(tape + b * P, ck_prev + b * P, P * sizeof(REAL));
        memcpy(tape + (B + b) * P, ck_cur + b * P, P * sizeof(REAL));
        for (i64 n = start; n < stop; ++n) {
            i64 j = n - start;
            REAL* o = tape + ((j + 2) * B + b) * P;
            step_SFX(W, M, linear, bc, a, c, chat, cnl, tape + (j * B + b) * P + W + 1,
                     tape + ((j + 1) * B + b) * P + W + 1, o + W + 1);
            if (n < n_drive)
                for (i64 k = 0; k < n_src; ++k) o[src[k]] += drive[(n * B + b) * n_src + k];
        }
    }
}

/* One adjoint step for one sample, over the interior: w = g li, then
   o = bc o + h li + N(w). Linear: g = c, h = a. Nonlinear (u = the field u[m]):
   g = c q^2, h = a + m4k q (q - cnl u (N u - 4 u)). All arrays distinct. */
static void adjoint_step_SFX(i64 W, i64 M, int linear, const REAL* restrict bc,
                             const REAL* restrict a, const REAL* restrict c,
                             const REAL* restrict chat, REAL cnl, const REAL* restrict m4k,
                             const REAL* restrict u, const REAL* restrict li,
                             REAL* restrict w, REAL* restrict o) {
    if (linear) {
        for (i64 i = 0; i < M; ++i) w[i] = c[i] * li[i];
        for (i64 i = 0; i < M; ++i) {
            REAL s = w[i - 1] + w[i + 1] + w[i - W] + w[i + W];
            o[i] = bc[i] * o[i] + a[i] * li[i] + s;
        }
        return;
    }
    for (i64 i = 0; i < M; ++i) {
        REAL q = chat[i] + cnl * u[i] * u[i];
        w[i] = c[i] * q * q * li[i];
    }
    for (i64 i = 0; i < M; ++i) {
        REAL lap = u[i - 1] + u[i + 1] + u[i - W] + u[i + W] - 4 * u[i];
        REAL q = chat[i] + cnl * u[i] * u[i];
        REAL h = a[i] + m4k[i] * q * (q - cnl * u[i] * lap);
        REAL s = w[i - 1] + w[i + 1] + w[i - W] + w[i + W];
        o[i] = bc[i] * o[i] + h * li[i] + s;
    }
}

/* Adjoint steps m = hi..lo (descending) for samples b0..b1-1; see _Stepper.adjoint:
   lam[m] = P^T grad[m-1] + J[m]^T lam[m+1] + bc lam[m+2], written over lam[m+2] (the
   Jacobian term only when with_jacobian). Nonlinear: u[m] = tape[m - tape_first + 1]
   (see tape_SFX). w: (B, P) scratch with a zero halo. */
void adjoint_SFX(i64 B, i64 b0, i64 b1, i64 W, i64 P, i64 hi, i64 lo, int linear,
                 const REAL* bc, const REAL* a, const REAL* c, const REAL* chat, REAL cnl,
                 const REAL* m4k, const REAL* tape, i64 tape_first,
                 REAL* lam1_all, REAL* lam2_all, REAL* w_all, int with_jacobian,
                 const REAL* grad_record, i64 n_prb, const i64* prb,
                 i64 n_src, const i64* src, i64 n_drive, REAL* grad_drive) {
    const i64 M = P - 2 * W - 2;
    for (i64 b = b0; b < b1; ++b) {
        REAL* l1 = lam1_all + b * P;
        REAL* l2 = lam2_all + b * P;
        for (i64 m = hi; m >= lo; --m) {
            if (with_jacobian) {
                const REAL* u = linear ? 0 : tape + ((m - tape_first + 1) * B + b) * P + W + 1;
                adjoint_step_SFX(W, M, linear, bc, a, c, chat, cnl, m4k, u, l1 + W + 1,
                                 w_all + b * P + W + 1, l2 + W + 1);
            }
            for (i64 k = 0; k < n_prb; ++k)
                l2[prb[k]] += grad_record[((m - 1) * B + b) * n_prb + k];
            if (m - 1 < n_drive)
                for (i64 k = 0; k < n_src; ++k)
                    grad_drive[((m - 1) * B + b) * n_src + k] = l2[src[k]];
            REAL* t = l1; l1 = l2; l2 = t;
        }
    }
}
"""

_LL, _P, _I = ctypes.c_longlong, ctypes.c_void_p, ctypes.c_int
_SIGNATURES = {  # "real" is float or double
    "march": [_LL] * 7 + [_I] + [_P] * 4 + ["real"] + [_P, _P, _LL, _P, _LL, _P, _LL, _P, _P,
                                                        _LL, _P],
    "tape": [_LL] * 7 + [_I] + [_P] * 4 + ["real"] + [_P] * 3 + [_LL, _P, _LL, _P],
    "adjoint": [_LL] * 7 + [_I] + [_P] * 4 + ["real"] + [_P, _P, _LL, _P, _P, _P, _I, _P, _LL,
                                                         _P, _LL, _P, _LL, _P],
}
_C_REAL = {torch.float32: ("float", "f32", ctypes.c_float),
           torch.float64: ("double", "f64", ctypes.c_double)}


@functools.lru_cache(maxsize=1)
def _native_library() -> ctypes.CDLL | None:
    """Compile and load the C kernels (once per process); ``None`` without a C compiler."""
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not compiler or sys.platform == "win32":
        return None
    source = "".join(_KERNEL_SOURCE.replace("REAL", real).replace("SFX", sfx)
                     for real, sfx, _ in _C_REAL.values())
    with tempfile.TemporaryDirectory(prefix="physnn-wave2d-") as tmp:
        c_file, so_file = os.path.join(tmp, "wave2d.c"), os.path.join(tmp, "wave2d.so")
        with open(c_file, "w") as f:
            f.write(source)
        for flags in (["-O3", "-march=native"], ["-O3"]):
            try:
                done = subprocess.run([*shlex.split(compiler), *flags, "-shared", "-fPIC",
                                       c_file, "-o", so_file], capture_output=True, timeout=120)
            except (OSError, subprocess.SubprocessError):
                return None
            if done.returncode == 0:
                break
        else:
            return None
        lib = ctypes.CDLL(so_file)  # mapped: the file may go with the folder
    for _, sfx, c_real in _C_REAL.values():
        for name, args in _SIGNATURES.items():
            fn = getattr(lib, f"{name}_{sfx}")
            fn.argtypes = [c_real if a == "real" else a for a in args]
            fn.restype = None
    return lib


_POOL: tuple[int, int, concurrent.futures.ThreadPoolExecutor] | None = None  # pid, size, pool


def _thread_pool(workers: int) -> concurrent.futures.ThreadPoolExecutor:
    """A shared pool of at least ``workers`` threads (a new one after a fork)."""
    global _POOL
    if _POOL is None or _POOL[0] != os.getpid() or _POOL[1] < workers:
        if _POOL is not None and _POOL[0] == os.getpid():
            _POOL[2].shutdown(wait=False)
        pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="wave2d")
        _POOL = (os.getpid(), workers, pool)
    return _POOL[2]


def _over_batch(fn: Callable[[int, int], None], batch: int) -> None:
    """Run ``fn(b0, b1)`` on ranges of the batch, one per torch thread (the C kernels
    release the GIL, so Python threads run them in parallel)."""
    n = max(1, min(torch.get_num_threads(), batch))
    if n == 1:
        fn(0, batch)
        return
    edges = [batch * k // n for k in range(n + 1)]
    pool = _thread_pool(n)
    futures = [pool.submit(fn, edges[k], edges[k + 1]) for k in range(n)]
    for future in futures:
        future.result()


def _ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


class _NativeStepper(_Stepper):
    """:class:`_Stepper` whose :meth:`forward` and :meth:`adjoint` run the C kernels.

    The nonlinear adjoint works one sample at a time: per chunk of ``every`` steps it
    recomputes the sample's fields from the checkpoint onto a tape (``every`` fields, which
    stay in cache) and derives the Jacobian coefficients from them on the fly.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        lib = _native_library()
        if lib is None:
            raise RuntimeError("no C compiler found for the native wave2d kernels")
        sfx = _C_REAL[self.dtype][1]
        self._c = {name: getattr(lib, f"{name}_{sfx}") for name in _SIGNATURES}
        linear = self.linear
        a, c = (self.a_lin, self.c_lin) if linear else (self.a2, self.kappa)
        # arguments shared by every kernel: linear, bc, a, c, chat, cnl
        self._medium = (int(linear), _ptr(self.bc), _ptr(a), _ptr(c), _ptr(self.chat),
                        self.cnl_hat)
        self._coefficients = (a, c)  # keep the pointed-to tensors alive

    def forward(self, drive: torch.Tensor, n_steps: int, every: int = 0,
                ) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        batch = drive.shape[1]
        drive = drive.to(self.dtype).contiguous()
        record = torch.empty(n_steps, batch, len(self.probes), dtype=self.dtype)
        prev, cur = self.zeros(batch), self.zeros(batch)
        n_ckpt = -(-n_steps // every) if every > 0 else 0
        ckpt = torch.empty(n_ckpt, 2, batch, self.p, dtype=self.dtype) if n_ckpt else None

        def run(b0: int, b1: int) -> None:
            self._c["march"](batch, b0, b1, self.w, self.p, 0, n_steps, *self._medium,
                             _ptr(prev), _ptr(cur), len(self.sources), _ptr(self.sources),
                             drive.shape[0], _ptr(drive), len(self.probes), _ptr(self.probes),
                             _ptr(record), every, _ptr(ckpt))

        _over_batch(run, batch)
        return record, [] if ckpt is None else [(c[0], c[1]) for c in ckpt]

    def adjoint(self, grad_record: torch.Tensor, n_drive: int,
                checkpoints: list[tuple[torch.Tensor, torch.Tensor]], every: int,
                drive: torch.Tensor) -> torch.Tensor:
        n_steps, batch = grad_record.shape[0], grad_record.shape[1]
        grad_record = grad_record.to(self.dtype).contiguous()
        grad_drive = torch.zeros(n_drive, batch, len(self.sources), dtype=self.dtype)
        lam = (self.zeros(batch), self.zeros(batch))
        weighted = self.zeros(batch)
        drive = drive.to(self.dtype).contiguous()
        chunk = max(every, 1)
        tape = None if self.linear else torch.zeros(chunk + 1, batch, self.p, dtype=self.dtype)

        def adjoint(b0: int, b1: int, lams: tuple[torch.Tensor, torch.Tensor], hi: int,
                    lo: int, jacobian: bool, first: int = 0,
                    ) -> tuple[torch.Tensor, torch.Tensor]:
            """Steps hi..lo; returns (lam[lo], lam[lo + 1]) as (lam1, lam2) for the next."""
            self._c["adjoint"](batch, b0, b1, self.w, self.p, hi, lo, *self._medium,
                               _ptr(self.m4k), _ptr(tape), first, _ptr(lams[0]),
                               _ptr(lams[1]), _ptr(weighted), int(jacobian),
                               _ptr(grad_record), len(self.probes), _ptr(self.probes),
                               len(self.sources), _ptr(self.sources), n_drive,
                               _ptr(grad_drive))
            return lams[::-1] if (hi - lo + 1) % 2 else lams

        def run(b0: int, b1: int) -> None:
            if self.linear:
                adjoint(b0, b1, adjoint(b0, b1, lam, n_steps, n_steps, False), n_steps - 1, 1,
                        True)
                return
            for b in range(b0, b1):  # one sample at a time: its tape stays in cache
                lams = adjoint(b, b + 1, lam, n_steps, n_steps, False)
                for first in range((n_steps - 1) // chunk * chunk, -1, -chunk):
                    last = min(first + chunk, n_steps)  # adjoint steps max(first, 1)..last-1
                    if last - 1 < max(first, 1):
                        continue
                    prev, cur = checkpoints[first // chunk]
                    self._c["tape"](batch, b, b + 1, self.w, self.p, first, last - 1,
                                    *self._medium, _ptr(prev), _ptr(cur), _ptr(tape),
                                    len(self.sources), _ptr(self.sources), drive.shape[0],
                                    _ptr(drive))
                    lams = adjoint(b, b + 1, lams, last - 1, max(first, 1), True, first)

        _over_batch(run, batch)
        return grad_drive


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


# -- geometry ----------------------------------------------------------------------------------

def _damping(nx: int, ny: int, width: int, sigma: float, order: float) -> torch.Tensor:
    """Graded absorbing frame: ``sigma * (d / width)^order`` at depth ``d`` cells (1/s).

    Shape: ``(nx, ny)``; ``sqrt(bx^2 + by^2)`` in the corners, zero inside the frame.
    """
    if width == 0 or sigma == 0:
        return torch.zeros(nx, ny, dtype=torch.float64)

    def ramp(n: int) -> torch.Tensor:
        depth = torch.zeros(n, dtype=torch.float64)
        edge = torch.linspace(1.0, 0.0, width + 1, dtype=torch.float64)  # cell 0 deepest
        depth[:width + 1] = edge
        depth[n - width - 1:] = torch.maximum(depth[n - width - 1:], edge.flip(0))
        return sigma * depth**order

    bx, by = ramp(nx)[:, None], ramp(ny)[None, :]
    return torch.sqrt(bx**2 + by**2)


def _line(n: int, x: int, lo: int, hi: int) -> torch.Tensor:
    """``n`` cells evenly spread on column ``x`` between rows ``lo`` and ``hi`` (inclusive)."""
    if n == 1:
        ys = torch.tensor([(lo + hi) // 2])
    else:
        ys = torch.linspace(lo, hi, n, dtype=torch.float64).round().long()
    return torch.stack([torch.full((n,), x), ys], dim=1)


def _random_cells(n: int, x_lo: int, x_hi: int, y_lo: int, y_hi: int,
                  gen: torch.Generator) -> torch.Tensor:
    """``n`` distinct cells drawn uniformly from the box ``[x_lo, x_hi] x [y_lo, y_hi]``."""
    width = y_hi - y_lo + 1
    flat = torch.randperm((x_hi - x_lo + 1) * width, generator=gen)[:n]
    return torch.stack([x_lo + flat // width, y_lo + flat % width], dim=1)


def _box_mask(nx: int, ny: int, box: tuple[int, int, int, int]) -> torch.Tensor:
    x_lo, x_hi, y_lo, y_hi = box
    mask = torch.zeros(nx, ny, dtype=torch.bool)
    mask[x_lo:x_hi + 1, y_lo:y_hi + 1] = True
    return mask


def _scatterers(nx: int, ny: int, box: tuple[int, int, int, int], n: int,
                radius: tuple[float, float], gen: torch.Generator) -> torch.Tensor:
    """Union of ``n`` discs with centres uniform in ``box`` and radii uniform in ``radius``
    (cells), clipped to the box. Shape: bool ``(nx, ny)``."""
    x_lo, x_hi, y_lo, y_hi = box
    u = torch.rand(n, 3, generator=gen, dtype=torch.float64)
    cx = x_lo + u[:, 0] * (x_hi - x_lo)
    cy = y_lo + u[:, 1] * (y_hi - y_lo)
    r = radius[0] + u[:, 2] * (radius[1] - radius[0])
    xs = torch.arange(nx, dtype=torch.float64)[:, None, None]
    ys = torch.arange(ny, dtype=torch.float64)[None, :, None]
    inside = ((xs - cx) ** 2 + (ys - cy) ** 2 <= r**2).any(-1)
    return inside & _box_mask(nx, ny, box)


def _lens(nx: int, ny: int, box: tuple[int, int, int, int]) -> torch.Tensor:
    """Biconvex lens filling the box: aperture its height, thickness half its width.

    Shape: bool ``(nx, ny)``.
    """
    x_lo, x_hi, y_lo, y_hi = box
    half_aperture = (y_hi - y_lo) / 2 + 0.5
    sag = max((x_hi - x_lo) / 4, 0.5)  # half the thickness
    radius = (half_aperture**2 + sag**2) / (2 * sag)
    cx, cy = (x_lo + x_hi) / 2, (y_lo + y_hi) / 2
    xs = torch.arange(nx, dtype=torch.float64)[:, None]
    ys = torch.arange(ny, dtype=torch.float64)[None, :]
    near = (xs - (cx - sag + radius)) ** 2 + (ys - cy) ** 2 <= radius**2
    far = (xs - (cx + sag - radius)) ** 2 + (ys - cy) ** 2 <= radius**2
    return near & far & _box_mask(nx, ny, box)


# -- the device ----------------------------------------------------------------------------------

class Wave2D(Simulator):
    """2-D scalar wave medium with point sources and intensity probes.

    Two input modes:

    * ``"pulse"``: ``n_in`` sources; input ``x[i]`` is the amplitude of a Gaussian-envelope
      sine pulse (carrier ``f0``, ``pulse_cycles`` carrier cycles at half maximum) emitted
      by source ``i``. Negative amplitudes flip the carrier's sign.
    * ``"waveform"``: the input is a time series of ``n_steps`` samples (sample rate
      ``1 / dt``), injected at each of ``n_sources`` sources; ``n_in = n_steps``.

    Sources sit on a column ``EDGE_GAP`` cells inside the absorbing layer on the low-``x``
    side, probes on the opposite column (``placement="line"``), or at seeded random cells
    in the first and last quarter of the interior (``placement="random"``). Scatterers or
    the lens fill the region between the two.

    The source strength is calibrated at construction by simulating the *linear* medium:
    for every input in range, the linear field is at most 1 in magnitude everywhere (a
    bound that is reached by some input). The CFL check uses
    ``c_max = max(c_lin) + max(c_nl, 0)``: exact for the linear field, an estimate when
    the nonlinearity itself raises the field. Outputs are time-averaged probe intensities
    ``mean_n u[n]^2`` in these units (at most 1); with ``normalize=True`` each row is
    divided by its sum over probes.

    Args:
        n_in: Number of sources in pulse mode (default 4). In waveform mode leave it
            ``None`` or equal to ``n_steps``.
        n_out: Number of probes.
        input_mode: ``"pulse"`` or ``"waveform"``.
        grid: ``(Nx, Ny)`` cells, the absorbing layer included; by default ``(100, 100)``,
            taller when the sources or probes need more rows (:func:`default_grid`).
        n_steps: Time steps per sample.
        h: Grid spacing (m).
        dt: Time step (s); default ``0.9`` of the CFL limit ``h / (c_max sqrt(2))``.
        c0: Background wave speed (m/s); default: sound in air.
        c1: Wave speed inside scatterers / the lens (m/s); default ``0.6 * c0``.
        c_nl: Kerr-like speed change (m/s) per unit field squared; ``0`` is a linear
            medium. Default ``0.2 * c0``.
        medium: ``"scatterers"``, ``"lens"`` or ``"homogeneous"``.
        n_scatterers: Discs drawn for ``medium="scatterers"``.
        scatterer_radius: ``(min, max)`` disc radius in cells.
        f0: Pulse carrier frequency (Hz); default one wavelength per 12 cells in the
            background. Keep ``c / f0 >= ~10 h`` for small numerical dispersion.
        pulse_cycles: Carrier cycles within the pulse envelope's full width at half
            maximum.
        n_sources: Sources fed the same waveform in waveform mode.
        placement: ``"line"`` or ``"random"``.
        pml: Absorbing layer width in cells.
        pml_order: Grading exponent ``p`` of the damping profile.
        pml_sigma: Damping at the outer edge (1/s); default
            ``(pml_order + 1) c_max ln(100) / (2 pml h)``: a 1 % round trip.
        normalize: Divide each output row by its sum over the probes.
        seed: Seeds the medium and random placements.
        in_range: Inclusive input range ``(in_min, in_max)``.
        max_batch: Largest batch simulated at once.
        checkpoint_every: Steps between checkpoints of the nonlinear backward pass;
            default ``ceil(sqrt(n_steps))``, so it keeps ``O(sqrt(n_steps))`` fields per
            sample (a linear medium needs none).
        gradient: ``"adjoint"`` (hand-written, checkpointed) or ``"autograd"`` (plain
            autograd through every step: ``O(n_steps)`` memory; a reference).
        backend: ``"native"``: C loops compiled on first use with the system C compiler
            (``$CC``, ``cc`` or ``gcc``), several times faster; ``"torch"``: torch tensor
            operations only; ``"auto"``: native when a compiler is found, else torch.
            Both give the same results up to rounding; the chosen one is ``self.backend``.
        settle_seconds: Lab time to let the field ring down between samples (s);
            default one window, ``n_steps * dt``.
        dtype: ``torch.float32`` or ``torch.float64``.

    Shape:
        - Input: ``(B, n_in)``: pulse amplitudes, or waveform samples, in ``in_range``.
        - Output: ``(B, n_out)``: time-averaged probe intensities (``>= 0``).

    Examples::

        >>> import torch
        >>> from phys.simulators.wave2d import Wave2D
        >>> dev = Wave2D(n_in=3, n_out=2, grid=(40, 40), n_steps=150, pml=8, seed=1)
        >>> dev.query(torch.rand(5, 3) * 2 - 1).shape
        torch.Size([5, 2])
        >>> audio = Wave2D(n_out=3, input_mode="waveform", grid=(40, 40), n_steps=100, pml=8)
        >>> audio.info.n_in
        100
    """

    name = "wave2d"

    def __init__(
        self,
        n_in: int | None = None,
        n_out: int = 4,
        *,
        input_mode: str = "pulse",
        grid: tuple[int, int] | None = None,
        n_steps: int = 400,
        h: float = 5e-3,
        dt: float | None = None,
        c0: float = 343.0,
        c1: float | None = None,
        c_nl: float | None = None,
        medium: str = "scatterers",
        n_scatterers: int = 10,
        scatterer_radius: tuple[float, float] = (2.0, 5.0),
        f0: float | None = None,
        pulse_cycles: float = 2.0,
        n_sources: int = 1,
        placement: str = "line",
        pml: int = 20,
        pml_order: float = 4.0,
        pml_sigma: float | None = None,
        normalize: bool = False,
        seed: int = 0,
        in_range: tuple[float, float] = (-1.0, 1.0),
        max_batch: int = 64,
        checkpoint_every: int | None = None,
        gradient: str = "adjoint",
        backend: str = "auto",
        settle_seconds: float | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        _check_choice(input_mode=(input_mode, INPUT_MODES), medium=(medium, MEDIA),
                      placement=(placement, PLACEMENTS), gradient=(gradient, GRADIENTS),
                      backend=(backend, BACKENDS))
        if grid is None:
            grid = default_grid(n_in if input_mode == "pulse" else None, n_out, n_sources, pml)
        if not (isinstance(grid, tuple | list) and len(grid) == 2):
            raise ValueError(f"grid must be a pair (Nx, Ny) of cell counts, got {grid!r}")
        nx, ny = grid
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 3 for v in grid):
            raise ValueError(f"grid must be two ints >= 3 (cells), got {grid!r}")
        _check_int(1, n_out=n_out, n_steps=n_steps, n_sources=n_sources)
        _check_int(0, pml=pml, n_scatterers=n_scatterers)
        if input_mode == "pulse":
            n_in = 4 if n_in is None else n_in
            _check_int(1, n_in=n_in)
            n_src = n_in
        else:
            if n_in is not None and n_in != n_steps:
                raise ValueError(f"in waveform mode the input is the waveform: n_in must be "
                                 f"None or n_steps={n_steps}, got {n_in!r}")
            n_in, n_src = n_steps, n_sources
        c1 = 0.6 * c0 if c1 is None else c1
        c_nl = 0.2 * c0 if c_nl is None else c_nl
        _check_positive(h=h, c0=c0, c1=c1, pulse_cycles=pulse_cycles, pml_order=pml_order)
        if not math.isfinite(c_nl):
            raise ValueError(f"c_nl must be a finite number, got {c_nl}")
        c_lin_max = c1 if medium != "homogeneous" and c1 > c0 else c0
        c_lin_min = c1 if medium != "homogeneous" and c1 < c0 else c0
        if c_lin_min + min(c_nl, 0.0) <= 0:
            raise ValueError(f"c_nl={c_nl} would make the wave speed negative (slowest "
                             f"linear speed {c_lin_min} m/s); use c_nl > {-c_lin_min}")
        c_max = c_lin_max + max(c_nl, 0.0)
        dt_limit = h / (c_max * math.sqrt(2))
        dt = COURANT * dt_limit if dt is None else dt
        _check_positive(dt=dt)
        if dt > dt_limit * (1 + 1e-12):
            raise ValueError(
                f"dt={dt:.6g} s breaks the CFL condition dt <= h / (c_max * sqrt(2)) = "
                f"{dt_limit:.6g} s (h={h:g} m, c_max={c_max:g} m/s: the fastest linear speed "
                f"plus c_nl={c_nl:g}); reduce dt, or increase h, or lower c0 / c1 / c_nl")
        f0 = c0 / (CELLS_PER_WAVELENGTH * h) if f0 is None else f0
        if pml_sigma is None:  # a round trip through the layer attenuates by ABSORB_TARGET
            depth = 2 * max(pml, 1) * h
            pml_sigma = (pml_order + 1) * c_max * math.log(1 / ABSORB_TARGET) / depth
        _check_positive(f0=f0)
        _check_non_negative(pml_sigma=pml_sigma)
        if input_mode == "pulse" and f0 * dt >= 0.5:
            raise ValueError(f"f0={f0:g} Hz is above the Nyquist frequency 1 / (2 dt) = "
                             f"{0.5 / dt:g} Hz; lower f0 or dt")
        r_lo, r_hi = (float(r) for r in scatterer_radius)
        if not 0 < r_lo <= r_hi:
            raise ValueError(f"scatterer_radius must be (min, max) with 0 < min <= max cells, "
                             f"got {scatterer_radius!r}")
        if checkpoint_every is None:
            checkpoint_every = math.ceil(math.sqrt(n_steps))
        _check_int(1, checkpoint_every=checkpoint_every)
        settle_seconds = n_steps * dt if settle_seconds is None else settle_seconds
        _check_non_negative(settle_seconds=settle_seconds)
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
        lo, hi = (float(v) for v in in_range)
        self.backend = _resolve_backend(backend)

        self.info = DeviceInfo(
            name=self.name, n_in=n_in, n_out=n_out, in_min=lo, in_max=hi,
            max_batch=max_batch, differentiable=True, stochastic=False,
            extra={
                "input_mode": input_mode, "grid": [nx, ny], "n_steps": n_steps, "h": h,
                "dt": dt, "c0": c0, "c1": c1, "c_nl": c_nl, "medium": medium, "f0": f0,
                "pml": pml, "pml_sigma": pml_sigma, "seed": seed, "normalize": normalize,
                "backend": self.backend,
                "units": "h: m, dt: s, c: m/s, f0: Hz; input: pulse amplitude or waveform "
                         "sample; output: time-averaged intensity, linear field <= 1",
            },
        )
        self.input_mode, self.medium, self.normalize, self.gradient = (
            input_mode, medium, normalize, gradient)
        self.grid, self.n_steps, self.h, self.dt = (nx, ny), n_steps, h, dt
        self.c0, self.c1, self.c_nl, self.f0 = c0, c1, c_nl, f0
        self.pulse_cycles, self.checkpoint_every = pulse_cycles, checkpoint_every
        self.settle_seconds, self.dtype = settle_seconds, dtype

        gen = torch.Generator().manual_seed(seed)
        self.sources, self.probes, box = _placements(nx, ny, pml, n_src, n_out, placement, gen)
        self.c_lin = self._speed_map(box, n_scatterers, (r_lo, r_hi), gen)
        self.damping = _damping(nx, ny, pml, pml_sigma, pml_order)
        self._check_reach(c_max)
        kappa = 1.0 / (1.0 + self.damping * dt)
        stepper = _NativeStepper if self.backend == "native" else _Stepper
        self._stepper = stepper(kappa, self.damping * dt, self.c_lin * (dt / h), c_nl * dt / h,
                                self.sources, self.probes, dtype)
        self._waveform = self._source_waveform()
        self.gain = self._calibrate(max(abs(lo), abs(hi)))
        self._waveform = self._waveform * self.gain

    # -- construction -------------------------------------------------------------------
    def _speed_map(self, box: tuple[int, int, int, int], n_scatterers: int,
                   radius: tuple[float, float], gen: torch.Generator) -> torch.Tensor:
        """Linear wave speed (m/s), ``(Nx, Ny)`` float64."""
        nx, ny = self.grid
        if self.medium == "scatterers":
            inside = _scatterers(nx, ny, box, n_scatterers, radius, gen)
        elif self.medium == "lens":
            inside = _lens(nx, ny, box)
        else:
            inside = torch.zeros(nx, ny, dtype=torch.bool)
        c = torch.full((nx, ny), self.c0, dtype=torch.float64)
        return c.masked_fill_(inside, self.c1)

    def _check_reach(self, c_max: float) -> None:
        """Refuse a window so short that no wave can reach any probe."""
        d = torch.cdist(self.sources.double(), self.probes.double()).min().item() * self.h
        window = self.n_steps * self.dt
        if d / c_max > window:
            raise ValueError(
                f"n_steps={self.n_steps} (window {window:.3g} s) is shorter than the travel "
                f"time {d / c_max:.3g} s from the nearest source to the nearest probe; "
                f"raise n_steps to at least {math.ceil(d / c_max / self.dt)}")

    def _source_waveform(self) -> torch.Tensor:
        """Per-step source signal per unit input, before calibration. Shape ``(n_drive,)``."""
        if self.input_mode == "waveform":
            return torch.ones(1, dtype=torch.float64)
        fwhm = self.pulse_cycles / self.f0
        sigma = fwhm / (2 * math.sqrt(2 * math.log(2)))
        t0 = 3 * sigma  # the envelope starts at e^-4.5 of its peak
        n_drive = math.ceil(2 * t0 / self.dt) + 1
        if n_drive > self.n_steps:
            raise ValueError(
                f"n_steps={self.n_steps} is shorter than the pulse ({n_drive} steps for "
                f"pulse_cycles={self.pulse_cycles} at f0={self.f0:g} Hz); raise n_steps, or "
                f"raise f0 / lower pulse_cycles")
        t = torch.arange(n_drive, dtype=torch.float64) * self.dt - t0
        return torch.exp(-0.5 * (t / sigma) ** 2) * torch.sin(2 * math.pi * self.f0 * t)

    def _calibrate(self, x_max: float) -> float:
        """Source gain so the linear field stays within ``[-1, 1]`` for all inputs in range.

        Pulse mode: the field is ``sum_i x_i R_i`` (``R_i``: response to source ``i``), so
        its bound is ``x_max * max_(n, r) sum_i |R_i[n](r)|``. Waveform mode: the field is
        the waveform convolved with the impulse response ``G``, bounded by
        ``x_max * max_r sum_n |G[n](r)|`` (reached by a matched waveform).
        """
        n_src = len(self.sources)
        if self.input_mode == "pulse":
            drive = self._waveform[:, None, None] * torch.eye(n_src, dtype=torch.float64)
            peak = torch.zeros(self._stepper.m, dtype=self.dtype)

            def monitor(u: torch.Tensor) -> None:
                torch.maximum(peak, u.abs().sum(0), out=peak)
        else:
            drive = torch.ones(1, 1, n_src, dtype=torch.float64)
            peak = torch.zeros(1, self._stepper.m, dtype=self.dtype)

            def monitor(u: torch.Tensor) -> None:
                peak.add_(u.abs())
        st = self._stepper
        with torch.no_grad():
            batch = drive.shape[1]
            st.march(st.zeros(batch), st.zeros(batch), 0, self.n_steps,
                     drive=drive.to(self.dtype).unbind(0), linear=True, monitor=monitor)
        bound = float(peak.max()) * x_max
        return 1.0 / bound if bound > 0 else 1.0

    # -- physics ------------------------------------------------------------------------
    def _drive(self, x: torch.Tensor) -> torch.Tensor:
        """Source term per step. Shape: ``(B, n_in)`` -> ``(n_drive, B, n_sources)``."""
        wave = self._waveform.to(x.dtype)
        if self.input_mode == "pulse":
            return wave[:, None, None] * x[None]
        n_src = len(self.sources)
        return (x.T * wave)[:, :, None].expand(-1, -1, n_src).contiguous()

    def _record(self, x: torch.Tensor) -> torch.Tensor:
        """Field at the probes for every step. Shape: ``(B, n_in)`` -> ``(n_steps, B, n_out)``."""
        x = x.to(self.dtype)
        drive = self._drive(x)
        if not (torch.is_grad_enabled() and drive.requires_grad):
            with torch.no_grad():
                return self._stepper.forward(drive, self.n_steps)[0]
        if self.gradient == "autograd":
            return self._record_autograd(drive)
        return _WaveFunction.apply(drive, self._stepper, self.n_steps, self.checkpoint_every)

    def _record_autograd(self, drive: torch.Tensor) -> torch.Tensor:
        """Reference for :meth:`_record`: plain autograd through every step (``O(n_steps)``
        memory), on ``(B, Nx, Ny)`` fields with padding; independent of :class:`_Stepper`."""
        kappa = (1.0 / (1.0 + self.damping * self.dt)).to(self.dtype)
        bc = -(1.0 - self.damping * self.dt).to(self.dtype) * kappa
        chat = (self.c_lin * (self.dt / self.h)).to(self.dtype)
        cnl = self.c_nl * self.dt / self.h
        batch = drive.shape[1]
        u_prev = u = torch.zeros(batch, *self.grid, dtype=self.dtype)
        rows = torch.arange(batch)[:, None]
        sx, sy = self.sources[:, 0], self.sources[:, 1]
        px, py = self.probes[:, 0], self.probes[:, 1]
        record = []
        for n in range(self.n_steps):
            p = F.pad(u, (1, 1, 1, 1))
            lap = p[:, :-2, 1:-1] + p[:, 2:, 1:-1] + p[:, 1:-1, :-2] + p[:, 1:-1, 2:] - 4 * u
            q = chat + cnl * u * u
            u_next = 2 * kappa * u + bc * u_prev + kappa * q * q * lap
            if n < drive.shape[0]:
                u_next = u_next.index_put((rows, sx, sy), drive[n], accumulate=True)
            u_prev, u = u, u_next
            record.append(u[:, px, py])
        return torch.stack(record)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self._record(x).square().mean(0)
        if self.normalize:
            y = y / (y.sum(1, keepdim=True) + torch.finfo(y.dtype).tiny)
        return y

    def _lab_cost(self, n_samples: int) -> tuple[float, None]:
        """Lab seconds: each sample emits for ``n_steps * dt`` and waits ``settle_seconds``."""
        return n_samples * (self.n_steps * self.dt + self.settle_seconds), None

    # -- extras -------------------------------------------------------------------------
    def probe_signals(self, x: torch.Tensor) -> torch.Tensor:
        """Field at the probes at every step (differentiable, like :meth:`simulate`).

        Shape: ``(B, n_in)`` -> ``(B, n_steps, n_out)``, normalised field units; step
        ``n`` is the field at time ``(n + 1) * dt``.
        """
        if self._closed:
            raise RuntimeError(f"device {self.info.name!r} is closed")
        x = x if isinstance(x, torch.Tensor) else torch.as_tensor(x)
        validate_batch(x, self.info)
        return self._record(x.reshape(-1, self.info.n_in)).transpose(0, 1)

    def propagate(self, u: torch.Tensor, u_prev: torch.Tensor | None = None,
                  n_steps: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """Advance source-free fields by ``n_steps`` leapfrog steps (no autograd).

        Args:
            u: Field at the current step, normalised units.
            u_prev: Field one step earlier; default ``u`` (starting at rest).
            n_steps: Steps to take.

        Shape:
            ``(B, Nx, Ny)`` or ``(Nx, Ny)`` in, the pair ``(u_prev, u)`` after the last
            step out, same shape.
        """
        _check_int(0, n_steps=n_steps)
        single = u.ndim == 2
        if tuple(u.shape[-2:]) != self.grid or u.ndim not in (2, 3):
            raise ValueError(f"u must have shape (B, {self.grid[0]}, {self.grid[1]}) or "
                             f"{self.grid}, got {tuple(u.shape)}")
        u_prev = u if u_prev is None else u_prev
        if u_prev.shape != u.shape:
            raise ValueError(f"u_prev must have the shape of u {tuple(u.shape)}, got "
                             f"{tuple(u_prev.shape)}")
        st = self._stepper
        with torch.no_grad():
            prev, cur = st.march(st.pad(u_prev.reshape(-1, *self.grid)),
                                 st.pad(u.reshape(-1, *self.grid)), 0, n_steps)
        out = st.unpad(prev), st.unpad(cur)
        return (out[0][0], out[1][0]) if single else out

    def energy(self, u_prev: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Discrete energy of the linear, lossless scheme between two consecutive steps.

        ``E = 1/2 sum h^2 [(u - u_prev)^2 / (c_lin dt)^2 + u (-L) u_prev]`` with ``L`` the
        5-point Laplacian (zero outside the grid): exactly conserved by :meth:`propagate`
        when ``c_nl = 0`` and ``pml_sigma = 0`` (up to rounding), positive under the CFL
        condition. Units: field^2 (per unit depth).

        Shape: ``(B, Nx, Ny)`` or ``(Nx, Ny)`` pairs -> ``(B,)`` or scalar.
        """
        u64, p64 = u.double(), u_prev.double()
        pad = F.pad(p64, (1, 1, 1, 1))
        neighbours = (pad[..., :-2, 1:-1] + pad[..., 2:, 1:-1]
                      + pad[..., 1:-1, :-2] + pad[..., 1:-1, 2:])
        kinetic = (u64 - p64) ** 2 * (self.h / (self.c_lin * self.dt)) ** 2
        potential = u64 * (4 * p64 - neighbours)
        return 0.5 * (kinetic + potential).sum((-2, -1))


def _resolve_backend(backend: str) -> str:
    """``"native"`` or ``"torch"`` for a requested backend (see :class:`Wave2D`)."""
    if backend != "torch" and _native_library() is not None:
        return "native"
    if backend == "native":
        raise RuntimeError("backend='native' needs a C compiler (set $CC, or install cc or "
                           "gcc); use backend='auto' or 'torch' to run without one")
    return "torch"


def default_grid(n_in: int | None, n_out: int, n_sources: int, pml: int) -> tuple[int, int]:
    """``(100, 100)`` cells, or taller when the sources or probes need more rows inside
    the absorbing layer (one row each)."""
    counts = [v for v in (n_in, n_out, n_sources) if isinstance(v, int)]
    pml = pml if isinstance(pml, int) and pml >= 0 else 0
    return 100, max(100, 2 * (pml + EDGE_GAP) + max(counts, default=1))


def _placements(nx: int, ny: int, pml: int, n_src: int, n_out: int, placement: str,
                gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, tuple[int, ...]]:
    """Source cells ``(n_src, 2)``, probe cells ``(n_out, 2)`` and the box between them
    ``(x_lo, x_hi, y_lo, y_hi)`` for the medium; ValueError when they do not fit."""
    x_s, x_p = pml + EDGE_GAP, nx - 1 - pml - EDGE_GAP
    y_lo, y_hi = pml + EDGE_GAP, ny - 1 - pml - EDGE_GAP
    need_x = 2 * (pml + EDGE_GAP) + 3
    if x_p - x_s < 2:
        raise ValueError(
            f"grid Nx={nx} is too small for the absorbing layer (pml={pml} cells each side), "
            f"a {EDGE_GAP}-cell gap and a source and a probe column apart: need Nx >= "
            f"{need_x}; enlarge grid or reduce pml")
    rows = y_hi - y_lo + 1
    if max(n_src, n_out) > rows:
        which = "sources" if n_src >= n_out else "probes"
        raise ValueError(
            f"grid Ny={ny} leaves {max(rows, 0)} rows inside the absorbing layer (pml={pml}) "
            f"for {max(n_src, n_out)} {which}: need Ny >= "
            f"{2 * (pml + EDGE_GAP) + max(n_src, n_out)}; enlarge grid, reduce pml or the "
            f"number of {which}")
    if placement == "line":
        return (_line(n_src, x_s, y_lo, y_hi), _line(n_out, x_p, y_lo, y_hi),
                (x_s + 2, x_p - 2, y_lo, y_hi))
    depth = max((x_p - x_s) // 4, 0)
    cells = (depth + 1) * rows
    if max(n_src, n_out) > cells:
        raise ValueError(f"grid {nx}x{ny} has {cells} cells for random placement of "
                         f"{max(n_src, n_out)} sources or probes; enlarge grid or reduce pml")
    sources = _random_cells(n_src, x_s, x_s + depth, y_lo, y_hi, gen)
    probes = _random_cells(n_out, x_p - depth, x_p, y_lo, y_hi, gen)
    return sources, probes, (x_s + depth + 2, x_p - depth - 2, y_lo, y_hi)


def _check_choice(**pairs: tuple[str, tuple[str, ...]]) -> None:
    for key, (value, choices) in pairs.items():
        if value not in choices:
            raise ValueError(f"{key} must be one of {', '.join(map(repr, choices))}; got {value!r}")


def _check_int(minimum: int, **values: int) -> None:
    for key, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"{key} must be an int >= {minimum}, got {value!r}")


def _check_positive(**values: float) -> None:
    for key, value in values.items():
        if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
            raise ValueError(f"{key} must be a positive number, got {value!r}")


def _check_non_negative(**values: float) -> None:
    for key, value in values.items():
        if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
            raise ValueError(f"{key} must be a number >= 0, got {value!r}")
