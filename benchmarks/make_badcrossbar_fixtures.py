"""Generate the small badcrossbar reference fixtures used by tests/test_nodal.py.

Run from the repository root (needs the optional dependency ``badcrossbar``)::

    .venv/bin/python benchmarks/make_badcrossbar_fixtures.py

Each case is stored as tests/fixtures/badcrossbar/<name>.npz with
G (R, C) conductances [S], V (B, R) input voltages [V], r_word, r_bit [ohm] and badcrossbar's
answers: currents (B, C), word_voltages and bit_voltages (B, R, C).  badcrossbar takes
resistances (1/G) and voltages shaped (R, B) and returns node voltages shaped (R, C, B).
"""

from __future__ import annotations

import logging
import pathlib
import warnings

import numpy as np

OUT = pathlib.Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "badcrossbar"

# name: (R, C, r_word, r_bit, batch, G range, V range, seed)
CASES = {
    "bc_4x3_w1_b10": (4, 3, 1.0, 10.0, 2, (1e-6, 1e-4), (0.0, 0.2), 1),
    "bc_8x8_w10_b10": (8, 8, 10.0, 10.0, 3, (1e-6, 1e-4), (0.0, 0.2), 2),
    "bc_16x12_w1_b1": (16, 12, 1.0, 1.0, 3, (1e-6, 1e-4), (0.0, 0.2), 3),
    "bc_12x16_w2.5_b0.5": (12, 16, 2.5, 0.5, 2, (1e-5, 1e-3), (-0.3, 0.3), 4),
}


def main() -> None:
    warnings.simplefilter("ignore")
    logging.disable(logging.CRITICAL)      # badcrossbar logs every step at INFO
    import badcrossbar

    OUT.mkdir(parents=True, exist_ok=True)
    for name, (R, C, r_word, r_bit, B, g_rng, v_rng, seed) in CASES.items():
        rng = np.random.default_rng(seed)
        G = rng.uniform(*g_rng, size=(R, C))
        V = rng.uniform(*v_rng, size=(B, R))
        sol = badcrossbar.compute(V.T, 1.0 / G, r_i_word_line=r_word, r_i_bit_line=r_bit)
        currents = np.asarray(sol.currents.output, dtype=float).reshape(B, C)
        word = np.moveaxis(np.asarray(sol.voltages.word_line, dtype=float).reshape(R, C, B), -1, 0)
        bit = np.moveaxis(np.asarray(sol.voltages.bit_line, dtype=float).reshape(R, C, B), -1, 0)
        path = OUT / f"{name}.npz"
        np.savez_compressed(path, G=G, V=V, r_word=r_word, r_bit=r_bit, currents=currents,
                            word_voltages=word, bit_voltages=bit,
                            badcrossbar_version=badcrossbar.__version__
                            if hasattr(badcrossbar, "__version__") else "1.1.0")
        print(f"{path.relative_to(OUT.parents[2])}: {path.stat().st_size} bytes")


if __name__ == "__main__":
    main()
