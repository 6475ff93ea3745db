"""Shared by the tests that run ngspice."""

import shutil

import pytest

HAVE_NGSPICE = shutil.which("ngspice") is not None


def needs_spice(func):
    """Mark a test as needing ngspice; skip it cleanly where ngspice is absent."""
    func = pytest.mark.skipif(not HAVE_NGSPICE, reason="ngspice not installed")(func)
    return pytest.mark.spice(func)


def require_ngspice():
    """Skip the calling test or fixture cleanly when ngspice cannot be used."""
    from cosim.errors import NgspiceNotFoundError
    from cosim.spice.ngspice import find_ngspice

    try:
        find_ngspice()
    except NgspiceNotFoundError:
        pytest.skip("ngspice is not installed (scripts/install_ngspice.sh installs it)")
