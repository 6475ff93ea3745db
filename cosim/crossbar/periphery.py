"""Periphery of a crossbar read (EQUATIONS.md §7): input DACs, output ADCs, and the
validation of every periphery parameter of the Compact / Spice backends.

The resistive part of the periphery (``r_driver`` in series with every word-line source,
``r_sense`` from every bit line's end to ground) is part of the circuit and lives in the
nodal solvers (:mod:`cosim.crossbar.nodal`) and the ngspice deck; this module holds what acts
on the numbers before and after the circuit:

* DAC (``dac_bits`` = b): the input x_i (dimensionless, 1 = one spike) of word line i is
  clipped to [0, x_max] and rounded to the nearest of the 2^b levels
  k · x_max / (2^b - 1), k = 0 .. 2^b - 1; the source then applies V_i = V_read · x_i.
  ``x_max`` is the largest input the array accepts (default 1: spikes).  b = 1 passes
  spikes unchanged.
* ADC (``adc_bits`` = b): every physical column's sense current I_j (A) is converted over
  the window [I_low, I_range] as code_j = round((clip(gain_j · I_j + offset_j, I_low,
  I_range) - I_low) / LSB), LSB = (I_range - I_low) / (2^b - 1), code_j in 0 .. 2^b - 1,
  and reported as I_low + code_j · LSB (A): at most 2^b distinct values per column.
  Unipolar (default, ``adc_bipolar=False``): I_low = 0 (sense currents of inputs in
  [0, x_max] are >= 0; negative currents clip to 0).  Bipolar (``adc_bipolar=True``,
  EQUATIONS.md §7, for negative currents, e.g. from negative offsets or inputs):
  I_low = -I_range, the 2^b levels symmetric about 0 (mid-rise: 0 A itself lies half an
  LSB from the nearest levels).
  ``adc_range`` is I_range in amperes, or "auto": calibrated once per programming from the
  programmed array as the largest sense current with every row driven at V_read · x_max.
  ``adc_offset_sigma`` (offset_j = sigma · I_range · N(0, 1)) and ``adc_gain_sigma``
  (gain_j = 1 + sigma · N(0, 1)) are drawn once per physical array from the backend's random
  stream (when the array is first created, like the device-to-device spread).
"""

from __future__ import annotations

import math

import numpy as np

from .. import _validate as check

__all__ = ["BITS_MAX", "RESISTOR_MAX", "check_bits", "check_periphery", "dac", "Adc"]

BITS_MAX = 24                  # 2^24 levels: beyond any converter (and beyond float32)
RESISTOR_MAX = 1e12            # ohm: r_driver / r_sense above this are an open circuit
SIGMA_MAX = 1.0                # offset (fraction of the range) and gain spreads
READ_TIME_MAX = 1.0            # s per read
CONVERSION_ENERGY_MAX = 1e-6   # J per conversion


def check_bits(name: str, bits):
    """None (ideal converter) or an integer number of bits in [1, BITS_MAX]."""
    if bits is None:
        return None
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) and not (
            isinstance(bits, float) and math.isfinite(bits) and bits == int(bits)):
        raise ValueError(f"{name} must be None (ideal) or an integer in [1, {BITS_MAX}], "
                         f"got {bits!r}")
    bits = int(bits)
    if not 1 <= bits <= BITS_MAX:
        raise ValueError(f"{name} must be None (ideal) or an integer in [1, {BITS_MAX}], "
                         f"got {bits!r}")
    return bits


def _in_range(name, value, lo, hi, what):
    value = check.real(name, value)
    if not (lo <= value <= hi):
        raise ValueError(f"{name} must lie in [{lo:g}, {hi:g}] ({what}), got {value!r}")
    return value


def check_periphery(*, r_driver, r_sense, dac_bits, x_max, adc_bits, adc_range,
                    adc_offset_sigma, adc_gain_sigma, read_time, adc_energy,
                    dac_energy, adc_bipolar=False) -> dict:
    """Validated periphery parameters (module docstring), one clear error each."""
    if not isinstance(adc_bipolar, (bool, np.bool_)):
        raise ValueError(f"adc_bipolar must be True or False (ADC window [-I_range, I_range] "
                         f"or [0, I_range]), got {adc_bipolar!r}")
    out = {
        "adc_bipolar": bool(adc_bipolar),
        "r_driver": _in_range("r_driver", r_driver, 0.0, RESISTOR_MAX, "ohm; 0 = ideal driver"),
        "r_sense": _in_range("r_sense", r_sense, 0.0, RESISTOR_MAX,
                             "ohm; 0 = ideal virtual ground"),
        "dac_bits": check_bits("dac_bits", dac_bits),
        "adc_bits": check_bits("adc_bits", adc_bits),
        "adc_offset_sigma": _in_range("adc_offset_sigma", adc_offset_sigma, 0.0, SIGMA_MAX,
                                      "offset spread as a fraction of the ADC range"),
        "adc_gain_sigma": _in_range("adc_gain_sigma", adc_gain_sigma, 0.0, SIGMA_MAX,
                                    "relative gain spread"),
        "read_time": _in_range("read_time", read_time, 0.0, READ_TIME_MAX, "seconds per read"),
        "adc_energy": _in_range("adc_energy", adc_energy, 0.0, CONVERSION_ENERGY_MAX,
                                "joule per ADC conversion"),
        "dac_energy": _in_range("dac_energy", dac_energy, 0.0, CONVERSION_ENERGY_MAX,
                                "joule per DAC conversion"),
    }
    x_max = check.real("x_max", x_max)
    if not 0 < x_max <= 1e6:
        raise ValueError(f"x_max must lie in (0, 1e6] (the largest input the array accepts; "
                         f"1 for spikes), got {x_max!r}")
    out["x_max"] = x_max
    if isinstance(adc_range, str):
        if adc_range != "auto":
            raise ValueError(f"adc_range must be 'auto' or a current in (0, 1] A, "
                             f"got {adc_range!r}")
    else:
        value = check.real("adc_range", adc_range)
        if not 0 < value <= 1.0:
            raise ValueError(f"adc_range must be 'auto' or a current in (0, 1] A, "
                             f"got {adc_range!r}")
        adc_range = value
    out["adc_range"] = adc_range
    if out["read_time"] == 0:
        raise ValueError("read_time must lie in (0, 1] seconds per read, got 0")
    return out


def dac(x: np.ndarray, bits: int | None, x_max: float) -> np.ndarray:
    """Inputs as the DAC applies them (module docstring); x itself when ``bits`` is None."""
    if bits is None:
        return x
    steps = float(2 ** bits - 1)
    return np.rint(np.clip(x, 0.0, x_max) * (steps / x_max)) * (x_max / steps)


class Adc:
    """The converters of one programmed array: per physical column range, offset, gain.

    ``full_scale`` (A, > 0) the range I_range; ``offset`` (A) and ``gain`` arrays of shape
    (columns,); ``bipolar``: window [-I_range, I_range] instead of [0, I_range].
    :meth:`__call__` converts sense currents (B, columns) (module docstring).
    """

    def __init__(self, bits: int, full_scale: float, offset: np.ndarray, gain: np.ndarray,
                 bipolar: bool = False):
        if not (math.isfinite(full_scale) and full_scale > 0):
            raise ValueError(f"the ADC range must be a positive current, got {full_scale!r} A "
                             f"(an array that conducts nothing cannot calibrate adc_range="
                             f"'auto': give adc_range in amperes)")
        self.bits = bits
        self.full_scale = float(full_scale)
        self.bipolar = bool(bipolar)
        self.low = -self.full_scale if self.bipolar else 0.0        # I_low (A)
        self.lsb = (self.full_scale - self.low) / float(2 ** bits - 1)
        self.offset = offset
        self.gain = gain

    def codes(self, currents: np.ndarray) -> np.ndarray:
        """Integer output codes (B, columns) in [0, 2^bits - 1]."""
        analog = currents * self.gain + self.offset
        return np.rint((np.clip(analog, self.low, self.full_scale) - self.low) / self.lsb)

    def __call__(self, currents: np.ndarray) -> np.ndarray:
        """Reported currents (A): I_low + code · LSB."""
        return self.low + self.codes(currents) * self.lsb
