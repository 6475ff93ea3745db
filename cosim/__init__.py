"""cosim: circuit-accurate co-simulation of spiking recurrent networks on memtransistor crossbars."""

__version__ = "0.1.0"

from .model import Model  # noqa: E402
from .network import SRNN  # noqa: E402

__all__ = ["Model", "SRNN", "__version__"]
