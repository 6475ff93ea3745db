"""Content-addressed on-disk cache of ngspice results.

Key = sha256 of (analysis, the deck with every ``.include`` inlined -- i.e. the exact
text ngspice runs, model library included --, the ngspice version string, the requested
vectors).  An entry is one file written atomically (temporary file in the same folder +
``os.replace``): a magic line, the sha256 of the body, and the body (an ``.npz`` of the
vectors).  The checksum is verified before the body is parsed, and any failure to read an
entry (missing, truncated, flipped byte, foreign file, non-finite values) is a miss: the
entry is removed (with a warning) and recomputed.  Only checked results are stored:
:func:`cosim.spice.ngspice.run_analysis` raises on non-finite or short results, and
:meth:`SpiceCache.put` refuses them too.

Location: the ``cache`` argument, else ``$COSIM_CACHE_DIR``, else
``$XDG_CACHE_HOME/cosim/spice`` (default ``~/.cache/cosim/spice``).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tempfile
import warnings
from pathlib import Path

import numpy as np

from .netlist import resolve_deck
from .ngspice import ENGINE, check_vectors, default_cache_dir, run_analysis
from .results import ANALYSIS_SCALES

__all__ = ["SpiceCache", "cached_run", "cached_run_op", "cached_run_dc", "cached_run_tran"]

_MAGIC = b"cosim-spice-cache-v2\n"
_MAX_ENTRY_BYTES = 1 << 30


class SpiceCache:
    """A folder of cached ngspice results (see the module docstring)."""

    def __init__(self, directory=None):
        self.directory = Path(directory).expanduser() if directory is not None \
            else default_cache_dir()

    def __repr__(self):
        return f"SpiceCache({str(self.directory)!r})"

    # -- keys -------------------------------------------------------------------------
    def key(self, deck: str, vectors=None, analysis: str = "op", ngspice=None) -> str:
        """sha256 hex key of everything that determines the result.

        The deck's ``.include`` files are read (and checked) here: the key covers their
        content, not their names.
        """
        h = hashlib.sha256(_MAGIC)
        h.update(analysis.encode() + b"\0")
        h.update(resolve_deck(deck).encode("utf-8") + b"\0")
        h.update((ngspice or ENGINE).info().version_string.encode() + b"\0")
        h.update(json.dumps(check_vectors(vectors)).encode())
        return h.hexdigest()

    def path(self, key: str) -> Path:
        if not isinstance(key, str) or not re.fullmatch(r"[0-9a-f]{64}", key):
            raise ValueError("cache keys are sha256 hex digests")
        return self.directory / key[:2] / f"{key}.npz"

    # -- read / write -----------------------------------------------------------------
    def get(self, key: str) -> dict | None:
        """The cached result, or None (a missing or unreadable entry; the latter is removed)."""
        path = self.path(key)
        try:
            with open(path, "rb") as fh:
                data = fh.read(_MAX_ENTRY_BYTES + 1)
        except FileNotFoundError:
            return None
        except OSError as exc:
            return self._discard(path, exc)
        try:
            return _decode_entry(data)
        except Exception as exc:   # any failure to read an entry is a miss
            return self._discard(path, exc)

    @staticmethod
    def _discard(path: Path, exc: Exception) -> None:
        warnings.warn(f"corrupt SPICE cache entry {path} ({type(exc).__name__}: {exc}); "
                      f"removed, recomputing", RuntimeWarning, stacklevel=3)
        try:
            path.unlink()
        except OSError:
            pass
        return None

    def put(self, key: str, result: dict) -> Path:
        """Store ``result`` (finite float vectors) atomically; returns the entry's path."""
        path = self.path(key)
        data = _encode_entry(result)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{key[:16]}-", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        return path


def _encode_entry(result: dict) -> bytes:
    if not isinstance(result, dict) or not result:
        raise ValueError("a cache entry needs at least one vector")
    names = list(result)
    arrays = [np.ascontiguousarray(result[n], dtype=np.float64) for n in names]
    for n, a in zip(names, arrays):
        if not isinstance(n, str):
            raise TypeError("vector names must be strings")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"refusing to cache non-finite values of {n}")
    buf = io.BytesIO()
    payload = {f"v{k}": a for k, a in enumerate(arrays)}
    payload["__names__"] = np.array(json.dumps(names))
    np.savez(buf, **payload)
    body = buf.getvalue()
    return _MAGIC + hashlib.sha256(body).hexdigest().encode() + b"\n" + body


def _decode_entry(data: bytes) -> dict:
    if len(data) > _MAX_ENTRY_BYTES:
        raise ValueError("entry larger than 1 GB")
    if not data.startswith(_MAGIC):
        raise ValueError("not a cosim cache entry (bad magic)")
    digest, body = data[len(_MAGIC):len(_MAGIC) + 64], data[len(_MAGIC) + 65:]
    if data[len(_MAGIC) + 64:len(_MAGIC) + 65] != b"\n" \
            or hashlib.sha256(body).hexdigest().encode() != digest:
        raise ValueError("checksum mismatch")
    with np.load(io.BytesIO(body), allow_pickle=False) as z:
        names = json.loads(str(z["__names__"]))
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ValueError("bad vector names")
        out = {n: np.array(z[f"v{k}"], dtype=np.float64) for k, n in enumerate(names)}
    for n, a in out.items():
        if not np.all(np.isfinite(a)):
            raise ValueError(f"non-finite values of {n}")
    return out


def _as_cache(cache) -> SpiceCache | None:
    if cache is False:
        return None
    if cache is None or cache is True:
        return SpiceCache()
    if isinstance(cache, SpiceCache):
        return cache
    if isinstance(cache, (str, os.PathLike)):
        return SpiceCache(cache)
    raise TypeError("cache must be a SpiceCache, a folder path, None (default folder) or "
                    "False (no caching)")


def cached_run(deck: str, vectors=None, analysis: str = "op", cache=None,
               **run_kwargs) -> dict:
    """``run_analysis`` through the cache: no ngspice call on a hit.

    ``run_kwargs`` go to :func:`~cosim.spice.ngspice.run_analysis`; ``points`` is also
    part of the key (a hit must have that many points like a fresh result).
    """
    store = _as_cache(cache)
    if store is None:
        return run_analysis(deck, vectors, analysis, **run_kwargs)
    scale = ANALYSIS_SCALES.get(analysis)      # the key names what run_analysis returns
    if scale is not None and vectors is not None:
        vectors = check_vectors(vectors)
        vectors = vectors if scale in vectors else [scale] + vectors
    points = run_kwargs.get("points")
    tag = analysis if points is None else f"{analysis}:{int(points)}"
    key = store.key(deck, vectors, tag, ngspice=run_kwargs.get("ngspice"))
    hit = store.get(key)
    if hit is not None and (points is None or all(v.size == points for v in hit.values())):
        return hit
    result = run_analysis(deck, vectors, analysis, **run_kwargs)
    try:
        store.put(key, result)
    except OSError as exc:
        warnings.warn(f"could not write the SPICE cache at {store.directory}: {exc}",
                      RuntimeWarning, stacklevel=2)
    return result


def cached_run_op(deck: str, vectors=None, cache=None, **run_kwargs) -> dict:
    """:func:`cosim.spice.ngspice.run_op` through the cache."""
    return cached_run(deck, vectors, "op", cache, **run_kwargs)


def cached_run_tran(deck: str, vectors=None, cache=None, **run_kwargs) -> dict:
    return cached_run(deck, vectors, "tran", cache, **run_kwargs)


def cached_run_dc(deck: str, vectors=None, cache=None, **run_kwargs) -> dict:
    return cached_run(deck, vectors, "dc", cache, **run_kwargs)
