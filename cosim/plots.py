"""Figures written to files (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import numbers  # noqa: E402

from ._io import save_figure  # noqa: E402

__all__ = ["spike_raster", "training_curves", "plot_sweep"]


def spike_raster(path, z, x=None, title="Spike raster", label=None, dt=1.0):
    """Raster of one sample: z (T, n_rec), optional input spikes x (T, n_in) above it."""
    z = np.asarray(z)
    rows = 2 if x is not None else 1
    fig, axes = plt.subplots(rows, 1, figsize=(8, 2.2 + 2.4 * rows), sharex=True, squeeze=False)
    axes = axes[:, 0]
    if x is not None:
        t_in, i_in = np.nonzero(np.asarray(x) > 0)
        axes[0].scatter(t_in * dt, i_in, s=2, c="tab:gray", marker="|")
        axes[0].set_ylabel("input")
    t_rec, i_rec = np.nonzero(z > 0)
    axes[-1].scatter(t_rec * dt, i_rec, s=3, c="black", marker="|")
    axes[-1].set_ylabel("recurrent unit")
    axes[-1].set_xlabel("time step")
    axes[-1].set_xlim(-0.5, z.shape[0] * dt)
    suffix = f" (label {label})" if label is not None else ""
    axes[0].set_title(f"{title}{suffix}; rate {z.mean():.3f} spikes/unit/step")
    fig.tight_layout()
    save_figure(fig, path, dpi=120)
    plt.close(fig)
    return path


def training_curves(path, history):
    """Loss and accuracy per epoch from a training history dict."""
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.2))
    epochs = np.arange(1, len(history["loss"]) + 1)
    ax[0].plot(epochs, history["loss"], marker="o")
    ax[0].set_xlabel("epoch")
    ax[0].set_ylabel("training loss")
    ax[1].plot(epochs, history["accuracy"], marker="o", label="train")
    if history.get("val_accuracy"):
        ax[1].plot(epochs, history["val_accuracy"], marker="s", label="test")
    ax[1].set_xlabel("epoch")
    ax[1].set_ylabel("accuracy")
    ax[1].legend()
    fig.tight_layout()
    save_figure(fig, path, dpi=120)
    plt.close(fig)
    return path


_UNITS = {"r": " (Ω per segment)", "r_word": " (Ω per segment)", "r_bit": " (Ω per segment)",
          "v_read": " (V)"}


def _is_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def plot_sweep(rows, path, grid=None, n_samples=None):
    """Accuracy against the first numeric swept parameter, one line per value of the next.

    "Swept" parameters have more than one value. ``seed`` is used for the x axis only if no
    other numeric parameter is swept; the points sharing x and line (e.g. over seeds) are
    averaged, with their standard deviation as error bars; ``n_samples`` (the samples
    each accuracy is measured on) goes into the title. Written atomically.
    """
    from .sweep import METRICS, plain_value

    if grid is None:
        grid = {}
        for row in rows:
            for k, v in row.items():
                if k not in METRICS:
                    grid.setdefault(k, [])
                    if v not in grid[k]:
                        grid[k].append(v)
    swept = [k for k, v in grid.items() if len(v) > 1]
    numeric = [k for k in swept if all(_is_number(v) for v in grid[k])]
    x_name = next((k for k in numeric if k != "seed"), numeric[0] if numeric else
                  (swept[0] if swept else None))
    line_name = next((k for k in swept if k not in (x_name, "seed")), None)

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    if x_name is None:
        acc = [r["accuracy"] for r in rows]
        ax.bar([0], [np.mean(acc)], yerr=[np.std(acc)] if len(acc) > 1 else None)
        ax.set_xticks([0], ["all points"])
    else:
        xs = list(grid[x_name])
        categorical = not all(_is_number(v) for v in xs)
        positions = {v: (i if categorical else v) for i, v in enumerate(xs)}
        lines = grid[line_name] if line_name else [None]
        for value in lines:
            mean, err, pos = [], [], []
            for xv in xs:
                acc = [r["accuracy"] for r in rows if r[x_name] == xv
                       and (line_name is None or r[line_name] == value)]
                if acc:
                    pos.append(positions[xv])
                    mean.append(np.mean(acc))
                    err.append(np.std(acc))
            label = None if line_name is None else f"{line_name} = {plain_value(value)}"
            ax.errorbar(pos, mean, yerr=err if any(err) else None, marker="o", capsize=3,
                        label=label)
        if categorical:
            ax.set_xticks(range(len(xs)), [str(plain_value(v)) for v in xs])
        else:
            positive = [v for v in xs if v > 0]
            if positive and max(positive) / min(positive) >= 50:
                if len(positive) < len(xs):
                    ax.set_xscale("symlog", linthresh=min(positive))
                else:
                    ax.set_xscale("log")
        ax.set_xlabel(x_name + _UNITS.get(x_name, ""))
        if line_name is not None:
            ax.legend()
    ax.set_ylabel("accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    others = [k for k in swept if k not in (x_name, line_name)]
    title = "sweep" + (f", N = {n_samples} samples" if n_samples else "") + \
        (f" (mean ± std over {', '.join(others)})" if others else "")
    ax.set_title(title)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)
    plt.close(fig)
    return path
