"""Pinned SHA-256 checksums of downloadable files, in ``sha256sum`` format.

``hillenbrand_wav.sha256``: the Hillenbrand et al. (1995) recordings of men and women
(1,116 /hVd/ words: 45 men and 48 women x 12 vowels, 16 kHz mono 16-bit PCM). Every
recording downloaded or extracted from an archive is checked against it before use.

``phyll_acoustic.sha256``: the experimental acoustic cavity's measurements published with
PhyLL (Momeni et al. 2023; github.com/MomeniAli/PhyLL at e10480b, MIT licence): inputs,
outputs and the licence.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files

__all__ = ["read"]


@cache
def read(name: str) -> dict[str, str]:
    """File name -> sha256 from the checksum list ``name`` shipped in this package."""
    table = {}
    for line in files(__package__).joinpath(name).read_text().splitlines():
        if line.strip():
            digest, _, filename = line.partition("  ")
            table[filename.strip()] = digest
    return table
