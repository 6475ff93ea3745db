"""cosim: circuit-accurate co-simulation of spiking recurrent networks on memtransistor crossbars."""

__version__ = "0.1.0"
