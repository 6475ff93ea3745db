"""Ideal vs compact vs SPICE: run one model on each backend and measure what differs.

``compare(model, x, y=None, backends=("ideal", "compact", "spice"), samples=N, out=DIR)``
runs the model's network on the first N samples with each backend (same weights, same
neurons) and writes a report folder:

* ``metrics.json``: accuracy per backend (when labels are given); per physical array and per
  step, the relative error of the bit-line currents of each backend against the reference
  (SPICE when it is compared, else compact) — max and mean; the spike agreement (% of
  (sample, step, unit) entries equal) and the first step where the rasters diverge;
* ``raster_overlay.png``: sample 0, ideal vs the reference backend (black: both spike,
  red: only ideal, blue: only the reference);
* ``ir_drop_<array>.png``: word-line drop V_i - v(w_ij) and bit-line voltage v(b_ij) of
  every array at a chosen step (compact nodal solution, IR drop included);
* ``current_errors.png``: histogram of the per-step relative current errors;
* ``accuracy_vs_resistance.png``: accuracy on the compact backend over a list of wire
  resistances, when ``sweep`` is given;
* ``report.md``: the numbers and the figures.

Current errors are compared on the same inputs: every backend's arrays are read with the
reference run's word-line inputs of each step, so a diverging raster does not pollute the
current comparison.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from . import _validate as check
from ._io import save_figure, write_json, write_text
from .crossbar import Compact, Ideal
from .export import array_input, physical_arrays
from .network import SRNN

__all__ = ["compare", "BACKENDS"]

BACKENDS = ("ideal", "compact", "spice")


def _load(model):
    from .model import Model

    if isinstance(model, (str, Path)):
        model = Model.load(model)
    net = model.network if isinstance(model, Model) else model
    if not isinstance(net, SRNN):
        raise TypeError(f"compare needs an SRNN model, got {type(net).__name__}")
    return net


def _backend(name, r_word, r_bit, read, device, cache):
    if not isinstance(name, str):
        return name
    key = check.choice("backend", name, BACKENDS)
    if key == "ideal":
        return Ideal()
    kwargs = dict(r_word=r_word, r_bit=r_bit, read=read, device=device)
    if key == "spice":
        from .crossbar.spice import Spice
        return Spice(cache=cache, **kwargs)
    return Compact(**kwargs)


def compare(model, x, y=None, backends=BACKENDS, samples=5, out=None, r_word=1.0, r_bit=1.0,
            read="linear", device=None, step=None, sweep=None, cache=None, progress=False):
    """Run ``model`` on ``samples`` samples of ``x`` with each backend; return the metrics.

    ``out`` (a folder) receives metrics.json, report.md and the figures. ``sweep`` is a list
    of wire resistances (ohms, both lines) for the accuracy-vs-resistance figure.
    """
    net = _load(model)
    x = net.check_input(x)
    samples = check.integer("samples", samples, minimum=1)
    samples = min(samples, x.shape[0])
    x = x[:samples]
    if y is not None:
        y = np.asarray(y)[:samples]
        if y.shape != (samples,) or not np.issubdtype(y.dtype, np.integer):
            raise ValueError("y must hold one integer label per sample")
        if y.min() < 0 or y.max() >= net.n_out:
            raise ValueError(f"y holds labels outside [0, {net.n_out - 1}]")
    names = [b if isinstance(b, str) else b.name for b in backends]
    if len(set(names)) != len(names) or not names:
        raise ValueError(f"backends must be distinct and not empty, got {names}")
    steps = x.shape[1]
    step = steps // 2 if step is None else check.integer("step", step, minimum=0)
    if step >= steps:
        raise ValueError(f"step must be < {steps}, got {step}")

    runs, nets, timings = {}, {}, {}
    for name, spec in zip(names, backends):
        hw = net.with_crossbar(_backend(spec, r_word, r_bit, read, device, cache))
        t0 = time.perf_counter()
        runs[name] = hw.run(x, progress=progress)
        timings[name] = time.perf_counter() - t0
        nets[name] = hw
    reference = "spice" if "spice" in runs else ("compact" if "compact" in runs else names[-1])

    metrics = {"samples": samples, "steps": steps, "reference": reference,
               "backends": names, "r_word": r_word, "r_bit": r_bit, "read": read,
               "seconds": timings, "accuracy": {}, "spikes": {}, "currents": {}}
    for name, rec in runs.items():
        metrics["spikes"][name] = {"rate": float(rec.z.mean())}
        if y is not None:
            metrics["accuracy"][name] = float(np.mean(rec.logits.argmax(axis=1) == y))
    ref_z = runs[reference].z
    for name, rec in runs.items():
        if name == reference:
            continue
        same = rec.z == ref_z
        diverged = np.nonzero(~same.all(axis=(0, 2)))[0]
        metrics["spikes"][name].update({
            f"agreement_vs_{reference}_percent": float(100.0 * same.mean()),
            f"first_divergent_step_vs_{reference}": int(diverged[0]) if diverged.size else None})

    errors = _current_errors(nets, reference, x, runs[reference].z)
    metrics["currents"] = {array: {other: {"max_rel": float(np.max(e)), "mean_rel": float(np.mean(e))}
                                   for other, e in per.items()}
                           for array, per in errors.items()}
    if sweep:
        metrics["sweep"] = _resistance_sweep(net, x, y, sweep, read, device)

    if out is not None:
        _write_report(Path(out), metrics, runs, nets, errors, x, step, reference)
    return metrics


def _current_errors(nets, reference, x, z_ref):
    """Per array: {backend: relative error per (sample, step)} against the reference."""
    physical = {name: hw for name, hw in nets.items() if name != "ideal"}
    ref_arrays = physical_arrays(nets[reference]) if reference in physical else None
    errors = {}
    if ref_arrays is None:
        return errors
    others = {name: physical_arrays(hw) for name, hw in physical.items() if name != reference}
    samples, steps = x.shape[0], x.shape[1]
    for k, (array, matrix, delay, rows, cols, ref_backend) in enumerate(ref_arrays):
        inputs = np.stack([[array_input(matrix, delay, x[s], z_ref[s], t)[rows]
                            for t in range(steps)] for s in range(samples)])
        flat = inputs.reshape(-1, inputs.shape[-1])
        ref_i = ref_backend.bitline_currents(flat)
        scale = np.maximum(np.abs(ref_i).max(axis=1), 1e-30)
        per = {}
        for name, arrays in others.items():
            cur = arrays[k][5].bitline_currents(flat)
            per[name] = (np.abs(cur - ref_i).max(axis=1) / scale).reshape(samples, steps)
        # the ideal circuit: the same conductances, no wire resistance (I = V G)
        g = ref_backend.conductances * ref_backend.read_factor
        ideal_i = (ref_backend.v_read * flat) @ g
        per["ideal"] = (np.abs(ideal_i - ref_i).max(axis=1) / scale).reshape(samples, steps)
        active = np.abs(ref_i).max(axis=1).reshape(samples, steps) > 0
        errors[array] = {name: e[active] if active.any() else np.zeros(1) for name, e in per.items()}
    return errors


def _resistance_sweep(net, x, y, resistances, read, device):
    rows = []
    for r in resistances:
        r = check.positive("sweep resistance", r, allow_zero=True)
        hw = net.with_crossbar(Compact(r_word=r, r_bit=r, read=read, device=device))
        rec = hw.run(x)
        row = {"r": r, "spike_rate": float(rec.z.mean())}
        if y is not None:
            row["accuracy"] = float(np.mean(rec.logits.argmax(axis=1) == y))
        rows.append(row)
    return rows


def _write_report(out, metrics, runs, nets, errors, x, step, reference):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    figures = []

    if "ideal" in runs and reference != "ideal":
        a, b = runs["ideal"].z[0], runs[reference].z[0]
        fig, ax = plt.subplots(figsize=(8, 4))
        for mask, color, label in [((a > 0) & (b > 0), "black", "both"),
                                   ((a > 0) & (b == 0), "tab:red", "ideal only"),
                                   ((a == 0) & (b > 0), "tab:blue", f"{reference} only")]:
            t, i = np.nonzero(mask)
            ax.scatter(t, i, s=6, marker="|", c=color, label=f"{label} ({mask.sum()})")
        ax.set_xlabel("time step")
        ax.set_ylabel("recurrent unit")
        ax.set_title(f"Spike raster, sample 0: ideal vs {reference}")
        ax.legend(loc="upper right", fontsize=8)
        fig.tight_layout()
        figures.append(("Spike raster overlay", save_figure(fig, out / "raster_overlay.png", dpi=120)))
        plt.close(fig)

    physical = nets.get("compact") or next((h for n, h in nets.items() if n != "ideal"), None)
    if physical is not None:
        z0 = runs[reference].z[0]
        for array, matrix, delay, rows, cols, backend in physical_arrays(physical):
            if not hasattr(backend, "solution"):
                continue
            # the chosen step, or the nearest later (then earlier) step that drives this array
            order = list(range(step, x.shape[1])) + list(range(step - 1, -1, -1))
            at = next((t for t in order
                       if np.any(array_input(matrix, delay, x[0], z0, t)[rows])), None)
            if at is None:
                continue
            inputs = array_input(matrix, delay, x[0], z0, at)[rows]
            sol = backend.solution(inputs)
            v = backend.v_read * inputs
            word_drop = v[:, None] - sol.word_voltages
            fig, ax = plt.subplots(1, 2, figsize=(10, 3.8))
            for axis, data, title in [(ax[0], word_drop * 1e3, "word-line drop V_i - v(w_ij) [mV]"),
                                      (ax[1], sol.bit_voltages * 1e3, "bit-line voltage v(b_ij) [mV]")]:
                im = axis.imshow(data, aspect="auto", cmap="viridis")
                axis.set_title(title, fontsize=9)
                axis.set_xlabel("bit line j")
                axis.set_ylabel("word line i")
                fig.colorbar(im, ax=axis)
            fig.suptitle(f"IR drop, array '{array}', step {at}, sample 0 "
                         f"(r_word {backend.r_word} Ω, r_bit {backend.r_bit} Ω)", fontsize=10)
            fig.tight_layout()
            figures.append((f"IR drop of array {array}",
                            save_figure(fig, out / f"ir_drop_{array}.png", dpi=110)))
            plt.close(fig)

    if errors:
        fig, ax = plt.subplots(figsize=(7, 3.5))
        for array, per in errors.items():
            for name, e in per.items():
                e = np.maximum(e, 1e-17)
                ax.hist(np.log10(e), bins=40, alpha=0.5, label=f"{array}: {name} vs {reference}")
        ax.set_xlabel("log10 relative bit-line current error per step")
        ax.set_ylabel("count")
        ax.legend(fontsize=7)
        fig.tight_layout()
        figures.append(("Current errors", save_figure(fig, out / "current_errors.png", dpi=120)))
        plt.close(fig)

    if metrics.get("sweep"):
        rows = metrics["sweep"]
        fig, ax = plt.subplots(figsize=(6, 3.5))
        rs = [max(r["r"], 1e-3) for r in rows]
        key = "accuracy" if "accuracy" in rows[0] else "spike_rate"
        ax.semilogx(rs, [r[key] for r in rows], marker="o")
        ax.set_xlabel("wire segment resistance r_word = r_bit [Ω] (0 plotted at 1e-3)")
        ax.set_ylabel(key.replace("_", " "))
        ax.set_title("compact backend")
        fig.tight_layout()
        figures.append(("Accuracy vs wire resistance",
                        save_figure(fig, out / "accuracy_vs_resistance.png", dpi=120)))
        plt.close(fig)

    write_json(out / "metrics.json", metrics)
    write_text(out / "report.md", _report_md(metrics, figures, out))


def _report_md(metrics, figures, out):
    lines = ["# cosim comparison report", "",
             f"{metrics['samples']} samples × {metrics['steps']} steps; backends "
             f"{', '.join(metrics['backends'])}; reference **{metrics['reference']}**; wires "
             f"r_word = {metrics['r_word']} Ω, r_bit = {metrics['r_bit']} Ω; read "
             f"{metrics['read']}.", "", "| backend | accuracy | spike rate | agreement with reference | first divergent step | run time |",
             "|---|---|---|---|---|---|"]
    ref = metrics["reference"]
    for name in metrics["backends"]:
        acc = metrics["accuracy"].get(name)
        sp = metrics["spikes"][name]
        agree = sp.get(f"agreement_vs_{ref}_percent")
        first = sp.get(f"first_divergent_step_vs_{ref}", "—")
        lines.append(f"| {name} | {'—' if acc is None else f'{acc:.1%}'} | {sp['rate']:.4f} | "
                     f"{'reference' if agree is None else f'{agree:.3f} %'} | "
                     f"{'none' if first is None else first} | {metrics['seconds'][name]:.1f} s |")
    if metrics["currents"]:
        lines += ["", f"Bit-line currents against {ref}, relative to the largest current of each step:", "",
                  "| array | backend | max | mean |", "|---|---|---|---|"]
        for array, per in metrics["currents"].items():
            for name, e in per.items():
                lines.append(f"| {array} | {name} | {e['max_rel']:.2e} | {e['mean_rel']:.2e} |")
    if metrics.get("sweep"):
        lines += ["", "Compact backend over wire resistance:", "", "| r [Ω] | accuracy | spike rate |",
                  "|---|---|---|"]
        for row in metrics["sweep"]:
            acc = row.get("accuracy")
            lines.append(f"| {row['r']} | {'—' if acc is None else f'{acc:.1%}'} | {row['spike_rate']:.4f} |")
    lines.append("")
    for title, path in figures:
        lines += [f"## {title}", "", f"![{title}]({Path(path).relative_to(out)})", ""]
    return "\n".join(lines)
