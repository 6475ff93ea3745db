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
from typing import NamedTuple

import numpy as np

__all__ = ["EnergyReport", "inference_energy", "predict_with_energy", "array_inputs"]

OPS_PER_SOP = 2          # one multiply-accumulate = 2 operations (TOPS/W convention)
SPARSE_READS = 0.8       # below this fraction of driven reads only those are evaluated


@dataclass
class EnergyReport:
    """Energy of a run, per sample (J).

    total (B,), per_array {name: (B,)}; per_step (T,) the mean over the samples of the
    energy of each step (all arrays); sops (B,) synaptic operations; reads,
    adc_conversions, dac_conversions {name: (B,)} counts per array.
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
        """One report of several runs' samples, in order (runs of the same steps; per_step
        the mean over all their samples)."""
        reports = list(reports)
        cat = (lambda key: {name: np.concatenate([getattr(r, key)[name] for r in reports])
                            for name in getattr(reports[0], key)})
        samples = np.array([r.total.size for r in reports], dtype=float)
        per_step = sum(n * r.per_step for n, r in zip(samples, reports)) / max(samples.sum(), 1)
        return cls(total=np.concatenate([r.total for r in reports]),
                   per_array=cat("per_array"), per_step=per_step,
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


def _first_nonzero(source, row0, row1):
    """The first nonzero of source[:, :, row0:row1] in C order (0.0 if none)."""
    for b in range(source.shape[0]):
        for t in range(source.shape[1]):
            for i in range(row0, row1):
                if source[b, t, i] != 0.0:
                    return source[b, t, i]
    return 0.0


def _pack_reads_py(source, row0, row1, sample_sets, step_sets, driven):
    """Bit sets of the reads of rows row0:row1 of source (B, T, n): bit t % 64 of
    sample_sets[b, t // 64, i] and bit b % 64 of step_sets[t, b // 64, i] set when read
    (b, t) drives row row0 + i, and driven[b, t] its number of driven rows.  Returns
    (value, binary): the first nonzero input value met, and whether every driven row of
    every read has that value (if not, the sets mean nothing; the counts still hold).
    Branch-free over the rows of a read, so the loop runs in SIMD lanes."""
    B, T, _ = source.shape
    value = _first_nonzero(source, row0, row1)
    mixed = False
    for b in range(B):
        word_b = b >> 6
        bit_b = np.uint64(b & 63)
        for t in range(T):
            bit_t = np.uint64(t & 63)
            read = source[b, t, row0:row1]          # 1-D views: a loop the compiler vectorises
            by_sample = sample_sets[b, t >> 6]
            by_step = step_sets[t, word_b]
            count = 0
            for i in range(row1 - row0):
                hit = read[i] != 0.0
                mixed |= hit & (read[i] != value)
                count += hit
                by_sample[i] |= np.uint64(hit) << bit_t
                by_step[i] |= np.uint64(hit) << bit_b
            driven[b, t] = count
    return value, not mixed


try:                                         # numba is a dependency
    import numba
    _first_nonzero = numba.njit(cache=True, nogil=True)(_first_nonzero)
    _pack_reads = numba.njit(cache=True, nogil=True)(_pack_reads_py)
except ImportError:                          # pragma: no cover
    _pack_reads = _pack_reads_py


class _Reads(NamedTuple):
    """The reads of one source's rows: driven (B, T) rows per read, and when every driven
    row is driven at one input value (spikes), that value and the reads as bit sets per
    sample (B, ceil(T / 64), rows) and per step (T, ceil(B / 64), rows); else value None."""

    driven: np.ndarray
    value: float | None
    sample_sets: np.ndarray | None
    step_sets: np.ndarray | None


def _reads(source, rows) -> _Reads:
    """:class:`_Reads` of rows ``rows`` (a slice) of source (B, T, n), one compiled pass."""
    batch, steps = source.shape[:2]
    n = rows.stop - rows.start
    sample_sets = np.zeros((batch, -(-steps // 64), n), np.uint64)
    step_sets = np.zeros((steps, -(-batch // 64), n), np.uint64)
    driven = np.empty((batch, steps), np.int64)
    value, binary = _pack_reads(np.ascontiguousarray(source, dtype=float), rows.start,
                                rows.stop, sample_sets, step_sets, driven)
    if not binary:
        return _Reads(driven, None, None, None)
    return _Reads(driven, float(value), sample_sets, step_sets)


def _steps_mask(steps: int, stop: int) -> np.ndarray:
    """(ceil(steps / 64),) uint64 words with the bits of steps 0 .. stop-1 set."""
    mask = np.zeros(-(-steps // 64), np.uint64)
    full, rest = divmod(stop, 64)
    mask[:full] = np.iinfo(np.uint64).max
    if rest:
        mask[full] = np.uint64((1 << rest) - 1)
    return mask


def _source_power_sums(backend, reads: _Reads, source, rows, shift):
    """(per sample (B,), per step (T,)) sums of the source power (W) of an array's reads of
    rows ``rows`` of ``source`` (B, T, n), delayed by ``shift`` steps: from the bit sets when
    the reads are spikes and the backend has a quadratic source form, else read by read
    (only the driven reads when most drive nothing)."""
    batch, steps = reads.driven.shape
    stop = max(steps - shift, 0)                     # source steps read within the run
    per_step = np.zeros(steps)
    sums = getattr(backend, "read_source_power_sums", None)
    if reads.value is not None and sums is not None and stop > 0:
        per_sample = sums(reads.sample_sets, reads.value, _steps_mask(steps, stop))
        if per_sample is not None:
            per_step[shift:] = sums(reads.step_sets[:stop], reads.value)
            return per_sample, per_step
    # x was validated by run() and z is its spikes: the unchecked reads (a view untiled)
    inputs = source[..., rows].reshape(batch * steps, -1)
    flat_read = reads.driven.reshape(-1) > 0         # undelayed reads
    power = np.zeros(batch * steps)
    n_driven = int(np.count_nonzero(flat_read))
    if n_driven > SPARSE_READS * flat_read.size:
        power[:] = backend.read_source_power(inputs)
    elif n_driven:
        power[flat_read] = backend.read_source_power(inputs[flat_read])
    power = _shift(power.reshape(batch, steps), shift)
    return power.sum(axis=1), power.sum(axis=0)


def inference_energy(net, x, record) -> EnergyReport:
    """The energy report (module docstring) of ``record = net.run(x)`` for an SRNN whose
    arrays are physical (Compact or Spice, tiled or not).

    Evaluated after the run, from each source's reads (x or z, undelayed; one compiled pass
    per source and row range, shared by the arrays that read it: "rec" and "out" both read
    z), then shifted by each array's delay.  Spike reads (one input value) of an array with
    a quadratic source form (a linear read) are summed as bit sets
    (:meth:`cosim.crossbar.nodal.power.SourceForm.set_sums`: ~R²/2 popcounts per sample
    and per step instead of R²/2 flops per read); other reads are formed one by one.
    """
    from .export import physical_arrays

    x = np.asarray(x, dtype=float)
    z = np.asarray(record.z, dtype=float)
    batch, steps = z.shape[:2]
    per_array, reads, adc, dac = {}, {}, {}, {}
    step_total = np.zeros(steps)
    sops = np.zeros(batch)
    packed = {}                            # (source, rows) -> _Reads, undelayed
    for name, matrix, delay, rows, cols, backend in physical_arrays(net):
        if not hasattr(backend, "read_source_power"):
            raise TypeError(f"energy needs physical arrays (compact or spice); array {name!r} "
                            f"is {type(backend).__name__}")
        source, shift = _source_and_shift(matrix, delay, x, z)
        key = (id(source), rows.start, rows.stop)
        if key not in packed:
            packed[key] = _reads(source, rows)
        power_per_sample, power_per_step = _source_power_sums(backend, packed[key], source,
                                                              rows, shift)
        active = _shift(packed[key].driven, shift)                   # (B, T) driven rows
        read = active > 0
        n_cols = cols.stop - cols.start
        conversions = backend.physical_columns * n_cols
        reads[name] = read.sum(axis=1)
        adc[name] = reads[name] * conversions
        dac[name] = active.sum(axis=1)
        energy = power_per_sample * backend.read_time
        energy_per_step = power_per_step * backend.read_time
        if backend.adc_energy:
            energy = energy + backend.adc_energy * adc[name]
            energy_per_step = energy_per_step + backend.adc_energy * conversions \
                * read.sum(axis=0)
        if backend.dac_energy:
            energy = energy + backend.dac_energy * dac[name]
            energy_per_step = energy_per_step + backend.dac_energy * active.sum(axis=0)
        step_total += energy_per_step
        per_array[name] = energy
        sops += dac[name] * n_cols
    return EnergyReport(total=sum(per_array.values(), np.zeros(batch)), per_array=per_array,
                        per_step=step_total / batch, sops=sops, reads=reads,
                        adc_conversions=adc, dac_conversions=dac)


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
