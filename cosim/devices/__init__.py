"""Device models and the weight <-> device mapping.

- :class:`Memtransistor`: compact three-terminal MoS2 memtransistor model (docs/device.md).
- :class:`Mapping`: weights to differential conductance pairs and back (docs/array.md §1).

This layer knows nothing of networks, crossbars or SPICE.
"""

from .mapping import (Mapping, Programmed, deinterleave, interleave, states_to_weights,
                      weights_to_states)
from .memtransistor import DEFAULT_CARD, DEFAULT_PARAMS, STATE_MAPS, Memtransistor

__all__ = ["Memtransistor", "DEFAULT_CARD", "DEFAULT_PARAMS", "STATE_MAPS", "Mapping",
           "Programmed", "interleave", "deinterleave", "weights_to_states",
           "states_to_weights"]
