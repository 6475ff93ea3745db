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


def printed_currents(stdout: str, deck_text: str):
    """Sense currents from what plain ``ngspice -b deck.cir`` printed, to >= 12 digits.

    An exported ``.op`` deck holds cosim's predictions ``ie<j>`` and ``iscale`` as
    ``.param`` lines and prints ``dev<j> = (I_j - ie<j>) / iscale`` with the operating
    point, so I_j = ie<j> + iscale * dev<j>.  Also returns the 7-digit ``vsense<j>#branch``.
    """
    import re

    import numpy as np

    params = dict(re.findall(r"^\.param (ie\d+|iscale) = (\S+)", deck_text, flags=re.M))
    dev = dict(re.findall(r"^\s*dev(\d+)\s+(\S+)\s*$", stdout, flags=re.M))
    shown = dict(re.findall(r"^\s*vsense(\d+)#branch\s+(\S+)", stdout, flags=re.M))
    n = len(shown)
    assert n > 0 and len(dev) == n, "ngspice printed no operating point"
    scale = float(params["iscale"])
    exact = np.array([float(params[f"ie{j}"]) + scale * float(dev[str(j)]) for j in range(n)])
    return exact, np.array([float(shown[str(j)]) for j in range(n)])
