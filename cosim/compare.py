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
from .crossbar import backend_names, build
from .export import array_input, physical_arrays
from .network import SRNN

__all__ = ["compare"]


def _load(model):
    from .model import Model

    if isinstance(model, (str, Path)):
        model = Model.load(model)
    net = model.network if isinstance(model, Model) else model
    if not isinstance(net, SRNN):
        raise TypeError(f"compare needs an SRNN model, got {type(net).__name__}")
    return net


def _backend(name, params, cache):
    if not isinstance(name, str):
        return name
    key = check.choice("backend", name, backend_names())   # read now: register() may add
    return build(key, local={"cache": cache} if key == "spice" else None, **params)


#: samples of a run between two progress reports (also the batch of each run)
BATCH = 32


def compare(model, x, y=None, backends=None, samples=None, out=None, r_word=1.0,
            r_bit=1.0, read="linear", device=None, step=None, sweep=None, cache=None,
            progress=None, spice_samples=10, backend_params=None, workers=1, scheduler=None):
    """Run ``model`` on ``x`` with each backend; return the metrics (and write a report).

    ``backends``: names or backend objects; None: every registered backend (ideal,
    compact, spice and any added by :func:`cosim.crossbar.register`).
    ``samples``: samples run on the fast backends (ideal, compact); None: all of ``x``.
    ``spice_samples``: samples run on the spice backend (at most ``samples``). Accuracies
    come with their sample count N and a 95 % Wilson interval; spikes and currents are
    compared on the samples every backend ran. ``r_word``, ``r_bit`` (ohm), ``read``,
    ``device`` and ``backend_params`` (any other constructor argument of the physical
    backends: levels, program_sigma, d2d_sigma, seed, v_read, ...) set the physical backends,
    all built by :func:`cosim.crossbar.build`. ``out`` (a folder) receives metrics.json,
    report.md and the figures. ``sweep`` is a list of wire resistances (ohms, both lines)
    for the accuracy-vs-resistance figure (compact backend). ``progress``: a callback
    ``progress(desc, done, total)`` (see ``cosim._validate.progress_callback``).
    ``workers`` (processes) or ``scheduler`` (a Dask address or client) spread the spice
    backend's samples, which are independent, one ngspice per worker (see
    :func:`_run_spread`); the other backends run here.
    """
    from .stats import accuracy_summary

    net = _load(model)
    x = net.check_input(x)
    report = check.progress_callback(progress)
    n_fast = x.shape[0] if samples is None else min(check.count("samples", samples), x.shape[0])
    n_spice = min(check.count("spice_samples", spice_samples), n_fast)
    if y is not None:
        y = check.labels("y", y, x.shape[0], net.n_out)
    if backends is None:
        backends = backend_names()
    names = [b if isinstance(b, str) else b.name for b in backends]
    if len(set(names)) != len(names) or not names:
        raise ValueError(f"backends must be distinct and not empty, got {names}")
    steps = x.shape[1]
    step = steps // 2 if step is None else check.integer("step", step, minimum=0)
    if step >= steps:
        raise ValueError(f"step must be < {steps}, got {step}")
    params = dict(backend_params or {})
    for key in ("r_word", "r_bit", "read", "device"):
        if key in params:
            raise ValueError(f"give {key} as compare's own argument, not in backend_params")
    params.update(r_word=r_word, r_bit=r_bit, read=read, device=device)
    built = {name: _backend(spec, params, cache) for name, spec in zip(names, backends)}
    workers = check.count("workers", workers)
    if scheduler is not None:                 # before any run: dask missing, a bad address
        from .executors import check_address, check_scheduler
        check_scheduler(scheduler)
        if isinstance(scheduler, str):
            scheduler = check_address(scheduler)
    if sweep:
        sweep = [check.positive("sweep resistance", r, allow_zero=True) for r in sweep]

    runs, nets, timings, counts = {}, {}, {}, {}
    for name, backend in built.items():
        hw = net.with_crossbar(backend)
        spice = backend.name == "spice" or getattr(backend, "inner", None) is not None \
            and backend.inner.name == "spice"
        n = n_spice if spice else n_fast
        t0 = time.perf_counter()
        if spice:      # sample by sample, so that any number of workers gives the same run
            runs[name] = _run_spread(hw, x[:n], f"compare: {name}", report, workers, scheduler)
        else:
            runs[name] = _run(hw, x[:n], f"compare: {name}", report)
        timings[name] = time.perf_counter() - t0
        nets[name], counts[name] = hw, n
    reference = "spice" if "spice" in runs else ("compact" if "compact" in runs else names[-1])
    common = min(counts.values())

    metrics = {"samples": common, "samples_per_backend": counts, "steps": steps,
               "reference": reference, "backends": names, "r_word": r_word, "r_bit": r_bit,
               "read": read, "backend_params": {k: v for k, v in params.items()
                                                if k != "device" and _jsonable(v)},
               "seconds": timings, "accuracy": {}, "accuracy_ci95": {}, "spikes": {},
               "currents": {}}
    for name, rec in runs.items():
        metrics["spikes"][name] = {"rate": float(rec.z.mean())}
        if y is not None:
            correct = int(np.sum(rec.logits.argmax(axis=1) == y[:counts[name]]))
            summary = accuracy_summary(correct, counts[name])
            metrics["accuracy"][name] = summary["accuracy"]
            metrics["accuracy_ci95"][name] = summary["ci95"]
    ref_z = runs[reference].z[:common]
    for name, rec in runs.items():
        if name == reference:
            continue
        same = rec.z[:common] == ref_z
        diverged = np.nonzero(~same.all(axis=(0, 2)))[0]
        metrics["spikes"][name].update({
            f"agreement_vs_{reference}_percent": float(100.0 * same.mean()),
            f"first_divergent_step_vs_{reference}": int(diverged[0]) if diverged.size else None})

    metrics["energy"] = _energy(nets, runs, x)
    xc = x[:common]
    errors = _current_errors(nets, reference, xc, ref_z)
    metrics["currents"] = {array: {other: {"max_rel": float(np.max(e)), "mean_rel": float(np.mean(e))}
                                   for other, e in per.items()}
                           for array, per in errors.items()}
    if sweep:
        metrics["sweep"] = _resistance_sweep(net, x[:n_fast], None if y is None else y[:n_fast],
                                             sweep, params, report)

    if out is not None:
        # IR-drop maps come from the compact nodal solution: a compact twin of the reference
        # settings when compact itself was not compared
        maps = nets.get("compact") or net.with_crossbar(build("compact", **params))
        _write_report(Path(out), metrics, runs, nets, errors, xc, step, reference, maps)
    return metrics


def _energy(nets, runs, x):
    """Per physical backend: the energy summary of its run (cosim.energy) with the mean
    energy per step (J, list over steps)."""
    from .energy import inference_energy

    out = {}
    for name, hw in nets.items():
        if name == "ideal":
            continue
        rec = runs[name]
        try:
            report = inference_energy(hw, x[:rec.z.shape[0]], rec)
        except TypeError:              # a backend without a circuit (a user's own): none
            continue
        # samples: spice runs fewer samples than compact, so the means are over other inputs
        out[name] = dict(report.summary(), samples=int(rec.z.shape[0]),
                         per_step_J=report.per_step.tolist())
    return out


def _energy_figures(out, energy, plt):
    """Energy per array (bars) and per step (lines) of every physical backend."""
    figures = []
    if not energy:
        return figures
    fig, ax = plt.subplots(1, 2, figsize=(11, 3.6))
    width = 0.8 / len(energy)
    for k, (name, e) in enumerate(energy.items()):
        arrays = list(e["energy_per_array_J"])
        values = [e["energy_per_array_J"][a] for a in arrays]
        ax[0].bar(np.arange(len(arrays)) + k * width, values, width, label=name)
        ax[0].set_xticks(np.arange(len(arrays)) + 0.4 - width / 2, arrays)
        ax[1].plot(e["per_step_J"], label=name)
    ax[0].set_ylabel("energy per inference [J]")
    ax[0].set_title("per array", fontsize=10)
    ax[1].set_xlabel("time step")
    ax[1].set_ylabel("energy per step [J]")
    ax[1].set_title("per step (mean over samples)", fontsize=10)
    for axis in ax:
        axis.legend(fontsize=8)
    fig.tight_layout()
    figures.append(("Energy per array and per step",
                    save_figure(fig, out / "energy.png", dpi=120)))
    plt.close(fig)
    return figures


def _jsonable(value):
    return value is None or isinstance(value, (int, float, str, bool))


def _run(hw, x, desc, report):
    """Run in batches of BATCH samples, reporting progress after each."""
    records = []
    for start in range(0, x.shape[0], BATCH):
        records.append(hw.run(x[start:start + BATCH]))
        report(desc, min(start + BATCH, x.shape[0]), x.shape[0])
    return _concatenate(records)


def _run_spread(hw, x, desc, report, workers, scheduler):
    """Run sample by sample (each sample's T steps are independent of the others) in this
    process, on ``workers`` spawned processes, or on the Dask cluster ``scheduler``; each
    worker has its own ngspice. The records come back in sample order."""
    from .executors import map_in_processes, map_on_dask

    items = [x[k:k + 1] for k in range(x.shape[0])]

    def done(count, total):
        report(desc, count, total)
    if scheduler is not None:
        records = map_on_dask(hw.run, items, scheduler, progress=done)
    else:
        records = map_in_processes(hw.run, items, workers=workers, progress=done)
    return _concatenate(records)


def _concatenate(records):
    if len(records) == 1:
        return records[0]
    return type(records[0])(z=np.concatenate([r.z for r in records]),
                            v=np.concatenate([r.v for r in records]),
                            y=np.concatenate([r.y for r in records]),
                            logits=np.concatenate([r.logits for r in records]))


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


def _resistance_sweep(net, x, y, resistances, params, report):
    from .stats import accuracy_summary

    rows = []
    for r in resistances:
        hw = net.with_crossbar(build("compact", **dict(params, r_word=r, r_bit=r)))
        rec = _run(hw, x, f"compare: compact at {r:g} ohm", report)
        row = {"r": r, "spike_rate": float(rec.z.mean()), "n": int(x.shape[0])}
        if y is not None:
            summary = accuracy_summary(int(np.sum(rec.logits.argmax(axis=1) == y)), x.shape[0])
            row["accuracy"], row["ci95"] = summary["accuracy"], summary["ci95"]
        rows.append(row)
    return rows


def _write_report(out, metrics, runs, nets, errors, x, step, reference, physical):
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
            v = backend.word_voltages(inputs)            # through the DAC, if any
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
        values = np.array([r[key] for r in rows])
        if key == "accuracy":
            ci = np.array([r["ci95"] for r in rows])
            ax.errorbar(rs, values, yerr=np.maximum([values - ci[:, 0], ci[:, 1] - values], 0.0), marker="o",
                        capsize=3)
            ax.set_xscale("log")
        else:
            ax.semilogx(rs, values, marker="o")
        ax.set_xlabel("wire segment resistance r_word = r_bit [Ω] (0 plotted at 1e-3)")
        ax.set_ylabel(key.replace("_", " ") + (" (95 % CI)" if key == "accuracy" else ""))
        ax.set_title(f"compact backend, N = {rows[0]['n']} samples")
        fig.tight_layout()
        figures.append(("Accuracy vs wire resistance",
                        save_figure(fig, out / "accuracy_vs_resistance.png", dpi=120)))
        plt.close(fig)

    figures += _energy_figures(out, metrics.get("energy"), plt)
    write_json(out / "metrics.json", metrics)
    write_text(out / "report.md", _report_md(metrics, figures, out))


def _report_md(metrics, figures, out):
    counts = metrics["samples_per_backend"]
    lines = ["# cosim comparison report", "",
             f"{metrics['steps']} steps per sample; backends {', '.join(metrics['backends'])}; "
             f"reference **{metrics['reference']}**; wires r_word = {metrics['r_word']} Ω, "
             f"r_bit = {metrics['r_bit']} Ω; read {metrics['read']}. Accuracies with their "
             f"sample count N and 95 % Wilson interval; spikes and currents compared on the "
             f"{metrics['samples']} samples every backend ran.", "",
             "| backend | N | accuracy (95 % CI) | spike rate | agreement with reference | "
             "first divergent step | run time |",
             "|---|---|---|---|---|---|---|"]
    ref = metrics["reference"]
    for name in metrics["backends"]:
        acc = metrics["accuracy"].get(name)
        ci = metrics["accuracy_ci95"].get(name)
        sp = metrics["spikes"][name]
        agree = sp.get(f"agreement_vs_{ref}_percent")
        first = sp.get(f"first_divergent_step_vs_{ref}", "—")
        acc_text = "—" if acc is None else f"{acc:.1%} ({100 * ci[0]:.1f}–{100 * ci[1]:.1f} %)"
        lines.append(f"| {name} | {counts[name]} | {acc_text} | {sp['rate']:.4f} | "
                     f"{'reference' if agree is None else f'{agree:.3f} %'} | "
                     f"{'none' if first is None else first} | {metrics['seconds'][name]:.1f} s |")
    if metrics["currents"]:
        lines += ["", f"Bit-line currents against {ref}, relative to the largest current of each step:", "",
                  "| array | backend | max | mean |", "|---|---|---|---|"]
        for array, per in metrics["currents"].items():
            for name, e in per.items():
                lines.append(f"| {array} | {name} | {e['max_rel']:.2e} | {e['mean_rel']:.2e} |")
    if metrics.get("sweep"):
        lines += ["", "Compact backend over wire resistance:", "",
                  "| r [Ω] | N | accuracy (95 % CI) | spike rate |", "|---|---|---|---|"]
        for row in metrics["sweep"]:
            acc = row.get("accuracy")
            acc_text = ("—" if acc is None else
                        f"{acc:.1%} ({100 * row['ci95'][0]:.1f}–{100 * row['ci95'][1]:.1f} %)")
            lines.append(f"| {row['r']} | {row['n']} | {acc_text} | {row['spike_rate']:.4f} |")
    if metrics.get("energy"):
        lines += ["", "Energy of an inference (source power x read_time per read, plus ADC/DAC "
                  "conversions; SOP = active rows x columns; TOPS/W = 2 SOP / E / 1e12):", "",
                  "| backend | N (samples) | energy per inference | fJ per SOP | TOPS/W |",
                  "|---|---|---|---|---|"]
        for name, e in metrics["energy"].items():
            lines.append(f"| {name} | {e['samples']} | {e['energy_per_inference_J']:.3e} J | "
                         f"{e['joules_per_sop'] * 1e15:.3f} | {e['tops_per_watt']:.1f} |")
    lines.append("")
    for title, path in figures:
        lines += [f"## {title}", "", f"![{title}]({Path(path).relative_to(out)})", ""]
    return "\n".join(lines)
