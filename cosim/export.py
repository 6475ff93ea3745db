"""Netlists for hardware engineers: one ngspice deck per physical array of a model.

For a saved model, every physical array (each weight matrix "in", "rec", "out", each synaptic
delay slice, each tile of a tiled matrix) is written with its programmed device states:

* ``DIR/<array>.cir``: ``.op`` of one chosen timestep of one chosen sample, the word lines
  driven by that step's spikes (V_read per spike). It runs unchanged in plain
  ``ngspice -b <array>.cir`` (the operating point, including ``vsense<j>#branch`` and the
  deviation ``dev<j>`` of each current from cosim's prediction, is printed: see
  :func:`cosim.spice.netlist.crossbar_deck`, ``expected_currents``);
  ``DIR/expected_currents.json`` maps each deck's file name to the sense currents
  (amperes, column order) that cosim's compact backend predicts for that step.
* ``DIR/memtransistor.lib``: the cell subcircuits, included by every deck by a relative
  path: the folder is self-contained and runs from any working directory.
* ``DIR/tran/<array>.cir``: ``.tran`` with PWL word-line sources replaying the sample's whole
  spike train (one timestep = ``step_time`` seconds); cells with a state node when the
  device relaxes (invtau > 0), else the fixed-state read cell (exact at read biases); run with ``ngspice -b -r out.raw tran/<array>.cir``.
* ``DIR/manifest.json``: per deck, the matrix, delay, tile rows/columns, the input vector of
  the chosen step and the mapping; ``DIR/README.md`` says how to run and read them.

Inputs of an array at step S (docs/equations.md): input slice d reads x[S-d+1], recurrent
slice d reads z[S-d], the readout reads z[S] (zeros before the start).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from . import _validate as check
from ._io import write_bytes, write_json, write_text
from .crossbar import Compact, Ideal, build
from .crossbar.spice import array_deck
from .device_models import LIBRARY
from .network import SRNN

__all__ = ["physical_arrays", "array_input", "export_netlists"]

_NAME = re.compile(r"^[a-z0-9_]+$")


def physical_arrays(net: SRNN):
    """[(name, matrix, delay, rows slice, cols slice, backend)] for every physical array."""
    out = []
    for (matrix, delay), backend in sorted(net.backends().items()):
        base = matrix if net.n_delay == 1 or matrix == "out" else f"{matrix}_d{delay}"
        tiles = getattr(backend, "tiles", None)
        if tiles is None:
            rows, cols = backend.shape
            out.append((base, matrix, delay, slice(0, rows), slice(0, cols), backend))
            continue
        for k, (row_slice, col_slice, tile) in enumerate(tiles):
            name = f"{base}_tile{k}_r{row_slice.start}_c{col_slice.start}"
            out.append((name, matrix, delay, row_slice, col_slice, tile))
    for name, *_ in out:
        assert _NAME.match(name), name      # generated names only: safe as file names
    return out


def array_input(matrix, delay, x_sample, z_sample, step):
    """Input vector of an array at ``step`` from the sample's input x (T, n_in) and spikes z."""
    if matrix == "in":
        t = step - delay + 1
        return x_sample[t] if t >= 0 else np.zeros(x_sample.shape[1])
    if matrix == "rec":
        t = step - delay
        return z_sample[t] if t >= 0 else np.zeros(z_sample.shape[1])
    return z_sample[step]


def physical_network(model_or_net, crossbar=None) -> SRNN:
    """The model's network on physical arrays: ``crossbar`` if given, else the saved one,
    else (an ideal model) the default compact arrays (``build("compact")``: linear read, 1 Ω
    segments), the same arrays ``cosim netlist`` picks for an ideal model."""
    from .model import Model

    if isinstance(model_or_net, (str, Path)):
        model_or_net = Model.load(model_or_net)
    net = model_or_net.network if isinstance(model_or_net, Model) else model_or_net
    if not isinstance(net, SRNN):
        raise TypeError("netlists are written for SRNN models")
    if crossbar is None:
        inner = getattr(net.crossbar, "inner", net.crossbar)
        if isinstance(inner, Compact):
            return net
        crossbar = build("compact")
    return net.with_crossbar(crossbar)


def export_netlists(model, out, x, sample=0, step=0, crossbar=None, step_time=1e-6,
                    tran=True) -> dict:
    """Write the decks of every physical array of ``model`` (see the module docstring).

    ``x`` is the input set (N, T, n_in) the sample is taken from. Returns
    ``{"decks": [...], "tran": [...], "expected": {...}, "manifest": path}``.
    """
    net = physical_network(model, crossbar)
    x = net.check_input(x)
    sample = check.integer("sample", sample, minimum=0)
    step = check.integer("step", step, minimum=0)
    if sample >= x.shape[0]:
        raise ValueError(f"sample must be < {x.shape[0]} (samples in the data), got {sample}")
    if step >= x.shape[1]:
        raise ValueError(f"step must be < {x.shape[1]} (timesteps), got {step}")
    step_time = check.positive("step_time", step_time)
    out = _output_folder(out)
    record = net.run(x[sample:sample + 1])
    x_sample, z_sample = x[sample], record.z[0]
    steps = x.shape[1]

    expected, manifest, decks, tran_decks = {}, {}, [], []
    # the folder is self-contained: the decks include this copy by a relative path
    library = write_bytes(out / LIBRARY.name, LIBRARY.read_bytes())
    for name, matrix, delay, rows, cols, backend in physical_arrays(net):
        if isinstance(backend, Ideal):
            raise TypeError("the ideal backend has no circuit to write; give a physical crossbar")
        inputs = array_input(matrix, delay, x_sample, z_sample, step)[rows]
        v_word = backend.word_voltages(inputs)          # V_read x the DAC's levels
        power = float(backend.source_power(inputs))
        where = (f"model array '{matrix}' (delay {delay}), weight rows {rows.start}..{rows.stop - 1}, "
                 f"weight columns {cols.start}..{cols.stop - 1}")
        currents = backend.analog_currents(inputs)      # the circuit's, before any ADC
        deck = array_deck(backend, v_word=v_word, include_relative_to=out,
                          model_library=library, expected_currents=currents, header={
            "model array": where,
            "stimulus": f".op of timestep {step} of sample {sample} (spikes x V_read on the word lines)",
            "run": f"ngspice -b {name}.cir  (prints the operating point and v(dev<j>))",
            "expected source power": f"{power!r} W = -sum_i V_i i(vin<i>) (cosim's nodal "
                                     f"solve; r_driver and r_sense included)"})
        path = write_text(out / f"{name}.cir", deck)
        decks.append(path)
        expected[path.name] = [float(c) for c in currents]
        manifest[path.name] = {"matrix": matrix, "delay": int(delay),
                               "weight_rows": [rows.start, rows.stop],
                               "weight_cols": [cols.start, cols.stop],
                               "shape": list(backend.states.shape), "read": backend.read,
                               "inputs": inputs.tolist(), "sample": sample, "step": step,
                               "v_read": backend.v_read, "scale_S_per_weight": backend.scale,
                               "read_factor": backend.read_factor,
                               "source_power_W": power}
        if tran:
            series = np.stack([array_input(matrix, delay, x_sample, z_sample, t)[rows]
                               for t in range(steps)])
            times = np.arange(steps) * step_time
            # At read biases (|V_DS| < v_on) the state does not move unless it relaxes
            # (invtau > 0): then the fixed-state read cell is exact and ~6x faster.
            relaxes = bool(np.any(np.asarray(backend.array_device.params["invtau"]) > 0))
            tdeck = array_deck(backend, stimulus=(times, backend.word_voltages(series)),
                               read_only=not relaxes, tstep=step_time / 20,
                               include_relative_to=out / "tran", model_library=library,
                               tstop=steps * step_time,
                               header={"model array": where,
                                       "stimulus": f".tran replaying sample {sample}: "
                                                   f"{steps} steps of {step_time!r} s",
                                       "run": f"ngspice -b -r {name}.raw tran/{name}.cir"})
            tran_decks.append(write_text(out / "tran" / f"{name}.cir", tdeck))
    write_json(out / "expected_currents.json", expected)
    manifest_path = write_json(out / "manifest.json", manifest)
    write_text(out / "README.md", _readme(sample, step, step_time, sorted(expected)))
    return {"decks": decks, "tran": tran_decks, "expected": expected, "manifest": manifest_path}


def _output_folder(out) -> Path:
    """``out`` as a folder that exists (created if needed); ValueError naming the problem."""
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise ValueError(f"netlist output folder {out} exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"cannot create the netlist output folder {out}: "
                         f"{exc.strerror or exc}") from None
    return out


def _readme(sample, step, step_time, names):
    listing = "\n".join(f"- `{n}`" for n in names)
    return f"""# ngspice decks written by `cosim netlist`

One deck per physical crossbar array of the model, with the programmed device states. The
folder is self-contained: every deck includes `memtransistor.lib` (the cell subcircuits,
copied here) by a relative path, so the folder runs from any working directory, on any
machine with ngspice (>= 39; tested with 46).

- `*.cir`: `.op` of timestep {step} of sample {sample}. Run `ngspice -b <deck>.cir`; the
  operating point is printed: `vsense<j>#branch` is the current (A) into the sense node of
  bit line j (7 digits), and `dev<j>` is its deviation from cosim's prediction,
  `dev<j> = (I_j - ie<j>) / iscale`, with `ie<j>` and `iscale` (the largest |ie|) written
  in the deck with all 17 digits: `I_j = ie<j> + iscale * dev<j>` gives the current to
  >= 12 significant digits. cosim's compact backend and ngspice agree to about 1e-10 of
  the largest current or better (|dev<j>| <~ 1e-10); `expected_currents.json` holds the
  same `ie<j>`.
- `tran/*.cir`: `.tran` replaying the sample's spike train, {step_time!r} s per timestep.
  Run `ngspice -b -r out.raw tran/<deck>.cir` and read `i(vsense<j>)` from `out.raw`.
- `manifest.json`: which weight matrix, delay slice and tile each deck holds, its input
  vector at the chosen step, and the weight mapping.

Editing: the device card is one `.param` block near the top of each deck (e.g. change
`g_max` there for every cell); the wire segment resistances are `.param rw`/`rb`; each
cell line `X<i>_<j> ... cell w0=<state>` holds only that cell's programmed state.

Node names: `w<i>_<j>` word line i at column j (drain), `b<i>_<j>` bit line j at row i
(source), `g<i>` gate line i, `s<j>` sense node; sources `Vin<i>`, `Vg<i>`, `Vsense<j>`.
Differential columns: bit line 2j carries G+ of output j, bit line 2j+1 carries G-.

Decks:
{listing}
"""
