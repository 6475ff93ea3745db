"""Content-addressed on-disk cache of ngspice results.

Key = sha256 of (analysis, deck text, the bytes of every model library the deck includes,
the ngspice version string, the requested vectors).  An entry is one ``.npz`` file written
atomically (temporary file in the same folder + ``os.replace``) that stores, besides the
vectors, a sha256 checksum of its payload; an entry that is corrupt or truncated is
detected on read, deleted and recomputed (with a warning).

Location: the ``cache`` argument, else ``$COSIM_CACHE_DIR``, else
``$XDG_CACHE_HOME/cosim/spice`` (default ``~/.cache/cosim/spice``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import warnings
import zipfile
from pathlib import Path

import numpy as np

from .ngspice import _check_vectors, default_cache_dir, find_ngspice, run_analysis

__all__ = ["SpiceCache", "cached_run", "cached_run_op", "cached_run_dc", "cached_run_tran",
           "deck_libraries"]

_FORMAT = b"cosim-spice-cache-v1"
_INCLUDE = re.compile(r'^\s*\.(?:include|inc|lib)\s+"?([^"\s]+(?:[^"]*[^"\s])?)"?', re.I | re.M)


def deck_libraries(deck: str) -> list[Path]:
    """Files named by ``.include`` / ``.lib`` lines of a deck (as written there)."""
    return [Path(m.group(1)) for m in _INCLUDE.finditer(deck)]


def _payload_checksum(names: list[str], arrays: list[np.ndarray]) -> str:
    h = hashlib.sha256(_FORMAT)
    h.update(json.dumps(names).encode())
    for a in arrays:
        a = np.ascontiguousarray(a, dtype=np.float64)
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


class SpiceCache:
    """A folder of cached ngspice results (see the module docstring)."""

    def __init__(self, directory=None):
        self.directory = Path(directory).expanduser() if directory is not None \
            else default_cache_dir()

    def __repr__(self):
        return f"SpiceCache({str(self.directory)!r})"

    # -- keys -------------------------------------------------------------------------
    def key(self, deck: str, vectors=None, analysis: str = "op", libraries=()) -> str:
        """sha256 hex key of everything that determines the result."""
        h = hashlib.sha256(_FORMAT + b"\0")
        h.update(analysis.encode() + b"\0")
        h.update(deck.encode("utf-8") + b"\0")
        libs = list(deck_libraries(deck)) + [Path(p) for p in libraries]
        for p in libs:
            h.update(str(p).encode("utf-8") + b"\0")
            try:
                h.update(hashlib.sha256(Path(p).expanduser().read_bytes()).digest())
            except OSError:
                h.update(b"<missing>")
        h.update(find_ngspice().version_string.encode() + b"\0")
        vecs = _check_vectors(vectors)
        h.update(json.dumps(vecs).encode())
        return h.hexdigest()

    def path(self, key: str) -> Path:
        if not re.fullmatch(r"[0-9a-f]{64}", key):
            raise ValueError("cache keys are sha256 hex digests")
        return self.directory / key[:2] / f"{key}.npz"

    # -- read / write -----------------------------------------------------------------
    def get(self, key: str) -> dict | None:
        """The cached result, or None (missing; corrupt entries are deleted with a warning)."""
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                names = json.loads(str(z["__names__"]))
                checksum = str(z["__checksum__"])
                arrays = [np.array(z[f"v{k}"], dtype=np.float64) for k in range(len(names))]
            if _payload_checksum(names, arrays) != checksum:
                raise ValueError("checksum mismatch")
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile,
                json.JSONDecodeError, TypeError) as exc:
            warnings.warn(f"corrupt SPICE cache entry {path} ({type(exc).__name__}: {exc}); "
                          f"deleted, recomputing", RuntimeWarning, stacklevel=3)
            try:
                path.unlink()
            except OSError:
                pass
            return None
        return dict(zip(names, arrays))

    def put(self, key: str, result: dict) -> Path:
        """Store ``result`` atomically; returns the entry's path."""
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        names = list(result)
        arrays = [np.ascontiguousarray(result[n], dtype=np.float64) for n in names]
        payload = {f"v{k}": a for k, a in enumerate(arrays)}
        payload["__names__"] = np.array(json.dumps(names))
        payload["__checksum__"] = np.array(_payload_checksum(names, arrays))
        fd, tmp = tempfile.mkstemp(prefix=f".{key[:16]}-", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, **payload)
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


def cached_run(deck: str, vectors=None, analysis: str = "op", cache=None, libraries=(),
               **run_kwargs) -> dict:
    """``run_analysis`` through the cache: no ngspice call on a hit."""
    store = _as_cache(cache)
    if store is None:
        return run_analysis(deck, vectors, analysis, **run_kwargs)
    if analysis in ("tran", "dc") and vectors is not None:
        scale = "time" if analysis == "tran" else "v(v-sweep)"
        vectors = _check_vectors(vectors)
        vectors = vectors if scale in vectors else [scale] + vectors
    key = store.key(deck, vectors, analysis, libraries)
    hit = store.get(key)
    if hit is not None:
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
