"""Energy of an inference on physical crossbar arrays (EQUATIONS.md §7, docs/array.md §5).

For every physical array a (every weight matrix, delay slice and tile) and step t of sample
n, the array's input x_a(n, t) is known from the run (input spikes for "in", the previous
step's spikes for "rec", this step's for "out"; :func:`cosim.export.array_input`).  A step
with no active row on an array makes **no read**.  A read costs::

    E_read = P_src(x) · t_read + e_adc · (physical columns) + e_dac · (active rows)

with P_src = Σ_i V_i I_i the power drawn from the word-line sources of the solved circuit
(:meth:`Compact.source_power`: wires, driver and sense resistors included), t_read the
backend's ``read_time`` and e_adc / e_dac its ``adc_energy`` / ``dac_energy`` (J per
conversion; every bit line of a read is converted once, every driven word line (nonzero
input) once).

Synaptic operations: SOP = Σ over reads of (active rows) × (weight columns of the array),
the spike-driven cell reads (a weight column is one differential G+/G- pair).  Energy per
SOP is E / SOP (J).  TOPS/W counts one SOP as a multiply-accumulate of 2 operations:
TOPS/W = 2 · SOP / E / 1e12 (operations per joule, in tera; the convention of the analog
in-memory computing literature).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["EnergyReport", "inference_energy", "predict_with_energy", "array_inputs"]

OPS_PER_SOP = 2          # one multiply-accumulate = 2 operations (TOPS/W convention)
SPARSE_READS = 0.8       # below this fraction of driven reads only those are evaluated


@dataclass
class EnergyReport:
    """Energy of a run, per sample (J).

    total (B,), per_array {name: (B,)}, per_step (B, T); sops (B,) synaptic operations;
    reads, adc_conversions, dac_conversions {name: (B,)} counts per array.
    """

    total: np.ndarray
    per_array: dict
    per_step: np.ndarray
    sops: np.ndarray
    reads: dict = field(default_factory=dict)
    adc_conversions: dict = field(default_factory=dict)
    dac_conversions: dict = field(default_factory=dict)

    @property
    def joules_per_sop(self) -> float:
        """Energy per synaptic operation (J), over all samples (nan without any SOP)."""
        sops = float(self.sops.sum())
        return float(self.total.sum()) / sops if sops else float("nan")

    @property
    def tops_per_watt(self) -> float:
        """2 SOP / E / 1e12 over all samples (module docstring); nan without energy."""
        energy = float(self.total.sum())
        return OPS_PER_SOP * float(self.sops.sum()) / energy / 1e12 if energy else float("nan")

    @classmethod
    def concatenate(cls, reports) -> "EnergyReport":
        """One report of several runs' samples, in order."""
        reports = list(reports)
        cat = (lambda key: {name: np.concatenate([getattr(r, key)[name] for r in reports])
                            for name in getattr(reports[0], key)})
        return cls(total=np.concatenate([r.total for r in reports]),
                   per_array=cat("per_array"),
                   per_step=np.concatenate([r.per_step for r in reports]),
                   sops=np.concatenate([r.sops for r in reports]), reads=cat("reads"),
                   adc_conversions=cat("adc_conversions"),
                   dac_conversions=cat("dac_conversions"))

    def summary(self) -> dict:
        """Plain numbers: mean energy per inference (J), per array (J), J/SOP, TOPS/W."""
        return {"energy_per_inference_J": float(self.total.mean()),
                "energy_per_array_J": {k: float(v.mean()) for k, v in self.per_array.items()},
                "sop_per_inference": float(self.sops.mean()),
                "joules_per_sop": self.joules_per_sop,
                "tops_per_watt": self.tops_per_watt}


def _shift(values: np.ndarray, shift: int) -> np.ndarray:
    """values (B, T, ...) delayed by ``shift`` steps along T (zeros before)."""
    if shift == 0:
        return values
    out = np.zeros_like(values)
    if shift < values.shape[1]:
        out[:, shift:] = values[:, :values.shape[1] - shift]
    return out


def _source_and_shift(matrix: str, delay: int, x, z):
    """What a matrix's delay slice reads (x or z, (B, T, n)) and its delay in steps: the
    batched form of :func:`cosim.export.array_input`."""
    if matrix == "out":
        return z, 0
    return (x, delay - 1) if matrix == "in" else (z, delay)


def array_inputs(matrix: str, delay: int, x: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Inputs (B, T, rows) of a matrix's delay slice over a run (x (B, T, n_in), z (B, T,
    n_rec))."""
    return _shift(*_source_and_shift(matrix, delay, x, z))


def inference_energy(net, x, record) -> EnergyReport:
    """The energy report (module docstring) of ``record = net.run(x)`` for an SRNN whose
    arrays are physical (Compact or Spice, tiled or not).

    Evaluated after the run, all B·T reads of an array at once (one source-power product per
    array, :class:`cosim.crossbar.nodal.power.SourceForm` for a linear read), each on the
    undelayed source (x or z) and then shifted by the array's delay; the driven-row counts of
    a source are computed once for every array that reads it ("rec" and "out" both read z).
    """
    from .export import physical_arrays

    x = np.asarray(x, dtype=float)
    z = np.asarray(record.z, dtype=float)
    batch, steps = z.shape[:2]
    per_array, reads, adc, dac = {}, {}, {}, {}
    per_step = np.zeros((batch, steps))
    sops = np.zeros(batch)
    driven_rows = {}                       # (source, rows) -> (B, T) driven rows, undelayed
    for name, matrix, delay, rows, cols, backend in physical_arrays(net):
        if not hasattr(backend, "read_source_power"):
            raise TypeError(f"energy needs physical arrays (compact or spice); array {name!r} "
                            f"is {type(backend).__name__}")
        # per read of the unshifted source, then delayed: no (B, T, n) copies
        source, shift = _source_and_shift(matrix, delay, x, z)
        inputs = source[..., rows].reshape(batch * steps, -1)        # a view when untiled
        key = (id(source), rows.start, rows.stop)
        if key not in driven_rows:
            # = np.count_nonzero(inputs, axis=1), a third faster through bytes
            driven_rows[key] = (inputs != 0).view(np.uint8).sum(
                axis=1, dtype=np.int64).reshape(batch, steps)
        active = _shift(driven_rows[key], shift)                     # (B, T) driven rows
        read = active > 0
        # x was validated by run() and z is its spikes: the unchecked read of the B T inputs,
        # only the driven ones when that saves work (an undriven read draws nothing)
        flat_read = driven_rows[key].reshape(-1) > 0                # undelayed reads
        power = np.zeros(batch * steps)
        n_driven = int(np.count_nonzero(flat_read))
        if n_driven > SPARSE_READS * flat_read.size:
            power[:] = backend.read_source_power(inputs)
        elif n_driven:
            power[flat_read] = backend.read_source_power(inputs[flat_read])
        power = _shift(power.reshape(batch, steps), shift)
        n_cols = cols.stop - cols.start
        energy = power * backend.read_time
        if backend.adc_energy:
            energy += read * (backend.adc_energy * backend.physical_columns * n_cols)
        if backend.dac_energy:
            energy += active * backend.dac_energy
        per_step += energy
        per_array[name] = energy.sum(axis=1)
        reads[name] = read.sum(axis=1)
        adc[name] = reads[name] * backend.physical_columns * n_cols
        dac[name] = active.sum(axis=1)
        sops += dac[name] * n_cols
    return EnergyReport(total=per_step.sum(axis=1), per_array=per_array, per_step=per_step,
                        sops=sops, reads=reads, adc_conversions=adc, dac_conversions=dac)


def predict_with_energy(net, x, batch_size: int = 256, progress=None):
    """(labels (N,), EnergyReport) of an SRNN on x (N, T, n_in), in batches of
    ``batch_size`` samples; ``progress(desc, done, total)`` after each batch."""
    from . import _validate as check

    x = net.check_input(x)
    batch_size = check.count("batch_size", batch_size)
    report = check.progress_callback(progress)
    labels, reports = [], []
    for start in range(0, x.shape[0], batch_size):
        record = net.run(x[start:start + batch_size], energy=True)
        labels.append(record.logits.argmax(axis=1))
        reports.append(record.extras["energy"])
        report("predict", min(start + batch_size, x.shape[0]), x.shape[0])
    return np.concatenate(labels).astype(np.int64), EnergyReport.concatenate(reports)
