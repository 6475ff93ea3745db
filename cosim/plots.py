"""Figures written to files (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ._io import save_figure  # noqa: E402

__all__ = ["spike_raster", "training_curves"]


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
