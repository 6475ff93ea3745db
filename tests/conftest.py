import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path, monkeypatch):
    """Every test gets its own SPICE cache: no test sees another's results."""
    monkeypatch.setenv("COSIM_CACHE_DIR", str(tmp_path / "cache"))
