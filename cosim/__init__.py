"""cosim: circuit-accurate co-simulation of spiking recurrent networks on memtransistor crossbars."""

__version__ = "0.1.0"

__all__ = ["Model", "SRNN", "__version__"]


def __getattr__(name):
    # Lazy: `import cosim` stays light for leaf users (spice/, devices/, crossbar/).
    if name == "Model":
        from .model import Model
        return Model
    if name == "SRNN":
        from .network import SRNN
        return SRNN
    raise AttributeError(f"module 'cosim' has no attribute {name!r}")
