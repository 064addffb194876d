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
pass over the fields per step instead of six to ten torch kernels), else in torch; off the
CPU (``Wave2D.to("cuda")``) always in torch.

Modules: :mod:`.config` (the options), :mod:`.device` (:class:`Wave2D`), :mod:`.medium`
(geometry and speed map), :mod:`.stepper` (torch time stepping and its adjoint),
:mod:`.native` (the C kernels of ``kernels.c``).
"""

from phys.simulators.wave2d.config import (
    ABSORB_TARGET,
    BACKENDS,
    CELLS_PER_WAVELENGTH,
    COURANT,
    GRADIENTS,
    INPUT_MODES,
    MEDIA,
    PLACEMENTS,
    Wave2DConfig,
)
from phys.simulators.wave2d.device import Wave2D
from phys.simulators.wave2d.medium import EDGE_GAP, default_grid

# the steppers and the kernel loader, for tests and benchmarks
from phys.simulators.wave2d.native import _native_library as _native_library
from phys.simulators.wave2d.native import _NativeStepper as _NativeStepper
from phys.simulators.wave2d.stepper import _Stepper as _Stepper

__all__ = ["ABSORB_TARGET", "BACKENDS", "CELLS_PER_WAVELENGTH", "COURANT", "EDGE_GAP",
           "GRADIENTS", "INPUT_MODES", "MEDIA", "PLACEMENTS", "Wave2D", "Wave2DConfig",
           "default_grid"]
