"""Torch-native building blocks of physical networks.

* :class:`DeviceLayer`: a device as an ``nn.Module``, inputs mapped into its range,
  with the gradient route (none, digital twin, simulator) chosen as data;
* :func:`physics_aware` / :class:`PhysicsAware`: device forward, twin backward;
* :mod:`phys.nn.goodness`: PhyLL's goodness functions and local losses;
* :func:`rms_normalize`, :func:`seeded_linear`: small helpers of digital parts.

A *block* for :class:`~phys.train.phyll.PhyLLTrainer` is any ``nn.Module`` with int
attributes ``in_features`` and ``out_features``, a :class:`DeviceLayer` inside and a
trainable digital part (see ``examples/custom_blocks.py``).
"""

from phys.nn import goodness
from phys.nn.device_layer import GRAD_ROUTES, DeviceLayer, device_layers
from phys.nn.functional import rms_normalize, seeded_linear
from phys.nn.physics_aware import PhysicsAware, Twin, physics_aware

__all__ = ["GRAD_ROUTES", "DeviceLayer", "PhysicsAware", "Twin", "device_layers", "goodness",
           "physics_aware", "rms_normalize", "seeded_linear"]
