"""ngspice raw files (ASCII or binary, real data): :func:`parse_raw`."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = ["parse_raw"]


def parse_raw(data: bytes | str | os.PathLike) -> list[dict]:
    """Parse an ngspice raw file (ASCII or binary, real data).

    Returns one dict per plot: ``{"title", "plotname", "vectors": {name: array}}``; vector
    names are lower case as ngspice writes them (``i(vsense0)``, ``v(w0_0)``, ``time``).
    Raises ValueError on a truncated or malformed file.
    """
    if isinstance(data, (str, os.PathLike)) and not isinstance(data, bytes):
        data = Path(data).read_bytes()
    plots = []
    pos = 0
    n = len(data)
    while pos < n:
        hdr = {}
        names: list[str] = []
        while True:
            end = data.find(b"\n", pos)
            if end < 0:
                if hdr:
                    raise ValueError("truncated raw file header")
                return plots
            line = data[pos:end].decode("latin-1").rstrip("\r")
            pos = end + 1
            if not line.strip():
                continue
            key, _, val = line.partition(":")
            key = key.strip().lower()
            if key == "variables":
                nv = _header_int(hdr, "no. variables")
                for _ in range(nv):
                    end = data.find(b"\n", pos)
                    if end < 0:
                        raise ValueError("truncated raw file variable list")
                    parts = data[pos:end].decode("latin-1").split()
                    pos = end + 1
                    if len(parts) < 2:
                        raise ValueError("bad variable line in raw file")
                    names.append(parts[1].lower())
                continue
            if key in ("values", "binary"):
                fmt_kind = key
                break
            hdr[key] = val.strip()
        nv = _header_int(hdr, "no. variables")
        npts = _header_int(hdr, "no. points")
        if "complex" in hdr.get("flags", "").lower():
            raise ValueError("complex raw data is not supported")
        if len(names) != nv:
            raise ValueError("raw file variable count mismatch")
        if fmt_kind == "binary":
            nbytes = 8 * nv * npts
            if pos + nbytes > n:
                raise ValueError("truncated binary raw file")
            arr = np.frombuffer(data[pos:pos + nbytes], dtype="<f8").reshape(npts, nv)
            pos += nbytes
        else:
            need = npts * (nv + 1)
            tokens: list[bytes] = []
            while len(tokens) < need:
                if pos >= n:
                    raise ValueError("truncated ASCII raw file")
                end = data.find(b"\n", pos)
                end = n if end < 0 else end
                tokens.extend(data[pos:end].split())
                pos = end + 1
            arr = np.empty((npts, nv))
            for p in range(npts):
                row = tokens[p * (nv + 1):(p + 1) * (nv + 1)]
                if int(row[0]) != p:
                    raise ValueError("ASCII raw file point index out of sequence")
                arr[p] = [float(t) for t in row[1:]]
        vectors = {name: np.array(arr[:, k]) for k, name in enumerate(names)}
        plots.append({"title": hdr.get("title", ""), "plotname": hdr.get("plotname", ""),
                      "vectors": vectors, "scale": names[0] if names else None})
    return plots


def _header_int(hdr, key):
    try:
        value = int(hdr.get(key, "0"))
    except ValueError:
        raise ValueError(f"raw file header {key!r} is not an integer") from None
    if value < 0:
        raise ValueError(f"raw file header {key!r} is negative")
    return value
