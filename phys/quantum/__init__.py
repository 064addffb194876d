"""Quantum layers and gradual classical-to-quantum swapping.

- :mod:`phys.quantum.layers`: :class:`~phys.quantum.layers.QuantumLayer`, a variational
  circuit on a batched torch state vector or on any PennyLane device.
- :mod:`phys.quantum.creep`: ``FlippedQuanv3x3`` and ``DataReUploadingLinear``, quantum
  stand-ins for a 3x3 convolution and a linear layer, unitary by construction.
- :mod:`phys.quantum.swap`: ``swap(model, names)`` and the paper's ``HybridNet``.
- :mod:`phys.quantum.study`: what ``phys swap`` runs.

The quantum device (a fixed circuit queried like any physical system) is
:mod:`phys.devices.quantum`, opened as ``phys.open("pennylane:default.qubit")``.
"""
