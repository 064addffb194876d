"""Medium and geometry of :class:`~phys.simulators.wave2d.Wave2D`: the absorbing layer,
source and probe placements, and the speed map (scatterers, lens or homogeneous).

Sizes and positions are in grid cells; cell ``(x, y)`` of an ``(Nx, Ny)`` grid is in
column ``x`` and row ``y``.
"""

from __future__ import annotations

import torch

__all__ = ["EDGE_GAP", "Box", "check_fit", "damping", "default_grid", "lens", "line",
           "placements", "random_cells", "scatterers", "speed_map"]

#: Cells between the absorbing layer and the source / probe lines.
EDGE_GAP = 2

#: ``(x_lo, x_hi, y_lo, y_hi)``: a box of cells, bounds inclusive.
Box = tuple[int, int, int, int]


def default_grid(n_in: int | None, n_out: int, n_sources: int, pml: int) -> tuple[int, int]:
    """Default ``(Nx, Ny)`` in cells: ``(100, 100)``, or taller when the sources or probes
    need more rows inside the absorbing layer (one row each).

    Args:
        n_in: Sources in pulse mode (``None`` in waveform mode).
        n_out: Probes.
        n_sources: Sources in waveform mode.
        pml: Absorbing layer width (cells).

    Examples::

        >>> default_grid(4, 4, 1, 20)
        (100, 100)
        >>> default_grid(None, 80, 1, 20)
        (100, 124)
    """
    counts = [v for v in (n_in, n_out, n_sources) if isinstance(v, int)]
    pml = pml if isinstance(pml, int) and pml >= 0 else 0
    return 100, max(100, 2 * (pml + EDGE_GAP) + max(counts, default=1))


def damping(nx: int, ny: int, width: int, sigma: float, order: float) -> torch.Tensor:
    """Graded absorbing frame: ``sigma * (d / width)^order`` at depth ``d`` cells (1/s).

    Args:
        nx, ny: Grid size (cells).
        width: Frame width (cells).
        sigma: Damping at the outer edge (1/s).
        order: Grading exponent.

    Shape: ``(nx, ny)`` float64; ``sqrt(bx^2 + by^2)`` in the corners, zero inside the
    frame.

    Examples::

        >>> b = damping(10, 10, 3, 100.0, 2.0)
        >>> float(b[0, 5]), float(b[5, 5])
        (100.0, 0.0)
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


def line(n: int, x: int, lo: int, hi: int) -> torch.Tensor:
    """``n`` cells evenly spread on column ``x`` between rows ``lo`` and ``hi`` (inclusive).

    Shape: ``(n, 2)`` int64.
    """
    if n == 1:
        ys = torch.tensor([(lo + hi) // 2])
    else:
        ys = torch.linspace(lo, hi, n, dtype=torch.float64).round().long()
    return torch.stack([torch.full((n,), x), ys], dim=1)


def random_cells(n: int, x_lo: int, x_hi: int, y_lo: int, y_hi: int,
                 gen: torch.Generator) -> torch.Tensor:
    """``n`` distinct cells drawn uniformly from the box ``[x_lo, x_hi] x [y_lo, y_hi]``.

    Shape: ``(n, 2)`` int64.
    """
    width = y_hi - y_lo + 1
    flat = torch.randperm((x_hi - x_lo + 1) * width, generator=gen)[:n]
    return torch.stack([x_lo + flat // width, y_lo + flat % width], dim=1)


def _box_mask(nx: int, ny: int, box: Box) -> torch.Tensor:
    x_lo, x_hi, y_lo, y_hi = box
    mask = torch.zeros(nx, ny, dtype=torch.bool)
    mask[x_lo:x_hi + 1, y_lo:y_hi + 1] = True
    return mask


def scatterers(nx: int, ny: int, box: Box, n: int, radius: tuple[float, float],
               gen: torch.Generator) -> torch.Tensor:
    """Union of ``n`` discs with centres uniform in ``box`` and radii uniform in ``radius``
    (cells), clipped to the box.

    Shape: bool ``(nx, ny)``.
    """
    x_lo, x_hi, y_lo, y_hi = box
    u = torch.rand(n, 3, generator=gen, dtype=torch.float64)
    cx = x_lo + u[:, 0] * (x_hi - x_lo)
    cy = y_lo + u[:, 1] * (y_hi - y_lo)
    r = radius[0] + u[:, 2] * (radius[1] - radius[0])
    xs = torch.arange(nx, dtype=torch.float64)[:, None, None]
    ys = torch.arange(ny, dtype=torch.float64)[None, :, None]
    inside = ((xs - cx) ** 2 + (ys - cy) ** 2 <= r**2).any(-1)
    return inside & _box_mask(nx, ny, box)


def lens(nx: int, ny: int, box: Box) -> torch.Tensor:
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


def speed_map(medium: str, nx: int, ny: int, box: Box, c0: float, c1: float,
              n_scatterers: int, radius: tuple[float, float],
              gen: torch.Generator) -> torch.Tensor:
    """Linear wave speed: ``c1`` (m/s) inside the scatterers or the lens in ``box``, ``c0``
    elsewhere.

    Args:
        medium: ``"scatterers"``, ``"lens"`` or ``"homogeneous"``.
        n_scatterers, radius: Disc count and ``(min, max)`` radius (cells) of
            :func:`scatterers`.
        gen: Draws the scatterers.

    Shape: ``(nx, ny)`` float64.
    """
    if medium == "scatterers":
        inside = scatterers(nx, ny, box, n_scatterers, radius, gen)
    elif medium == "lens":
        inside = lens(nx, ny, box)
    else:
        inside = torch.zeros(nx, ny, dtype=torch.bool)
    c = torch.full((nx, ny), c0, dtype=torch.float64)
    return c.masked_fill_(inside, c1)


def check_fit(nx: int, ny: int, pml: int, n_src: int, n_out: int, placement: str) -> None:
    """ValueError, naming what to change, when ``n_src`` sources and ``n_out`` probes do
    not fit the grid inside the absorbing layer (``pml`` cells) with the
    :data:`EDGE_GAP`."""
    x_s, x_p = pml + EDGE_GAP, nx - 1 - pml - EDGE_GAP
    y_lo, y_hi = pml + EDGE_GAP, ny - 1 - pml - EDGE_GAP
    if x_p - x_s < 2:
        raise ValueError(
            f"grid Nx={nx} is too small for the absorbing layer (pml={pml} cells each side), "
            f"a {EDGE_GAP}-cell gap and a source and a probe column apart: need Nx >= "
            f"{2 * (pml + EDGE_GAP) + 3}; enlarge grid or reduce pml")
    rows = y_hi - y_lo + 1
    if max(n_src, n_out) > rows:
        which = "sources" if n_src >= n_out else "probes"
        raise ValueError(
            f"grid Ny={ny} leaves {max(rows, 0)} rows inside the absorbing layer (pml={pml}) "
            f"for {max(n_src, n_out)} {which}: need Ny >= "
            f"{2 * (pml + EDGE_GAP) + max(n_src, n_out)}; enlarge grid, reduce pml or the "
            f"number of {which}")
    cells = ((x_p - x_s) // 4 + 1) * rows
    if placement == "random" and max(n_src, n_out) > cells:
        raise ValueError(f"grid {nx}x{ny} has {cells} cells for random placement of "
                         f"{max(n_src, n_out)} sources or probes; enlarge grid or reduce pml")


def placements(nx: int, ny: int, pml: int, n_src: int, n_out: int, placement: str,
               gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, Box]:
    """Source and probe cells, and the box between them for the medium.

    Sources sit on column ``pml + EDGE_GAP``, probes on the mirror column
    (``placement="line"``), or at cells of ``gen``'s choosing in the first and last
    quarter between those columns (``placement="random"``).

    Shape: sources ``(n_src, 2)``, probes ``(n_out, 2)``, int64; the box
    ``(x_lo, x_hi, y_lo, y_hi)``. ValueError (:func:`check_fit`) when they do not fit.
    """
    check_fit(nx, ny, pml, n_src, n_out, placement)
    x_s, x_p = pml + EDGE_GAP, nx - 1 - pml - EDGE_GAP
    y_lo, y_hi = pml + EDGE_GAP, ny - 1 - pml - EDGE_GAP
    if placement == "line":
        return (line(n_src, x_s, y_lo, y_hi), line(n_out, x_p, y_lo, y_hi),
                (x_s + 2, x_p - 2, y_lo, y_hi))
    depth = (x_p - x_s) // 4
    sources = random_cells(n_src, x_s, x_s + depth, y_lo, y_hi, gen)
    probes = random_cells(n_out, x_p - depth, x_p, y_lo, y_hi, gen)
    return sources, probes, (x_s + depth + 2, x_p - depth - 2, y_lo, y_hi)
