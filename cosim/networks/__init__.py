"""Network engines that learn without gradients; each network in a module of its own.

:class:`~cosim.networks.diehl_cook.DiehlCook`: the unsupervised STDP classifier of Diehl &
Cook (2015). (The gradient-trained :class:`cosim.network.SRNN` keeps its own module.)
"""

from .diehl_cook import AdaptiveThreshold, DiehlCook

__all__ = ["DiehlCook", "AdaptiveThreshold"]
