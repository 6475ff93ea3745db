"""Error types of cosim.

Every error cosim raises on purpose derives from :class:`CosimError`; the ones caused by
bad input also derive from :class:`ValueError` so callers may catch either.
"""


class CosimError(Exception):
    """Base class of all cosim errors."""


class DeviceCardError(CosimError, ValueError):
    """A device parameter card is missing a parameter or holds a non-physical value."""


class ModelFileError(CosimError, ValueError):
    """A saved model file is corrupt, truncated or not a cosim model."""


class TrainingDivergedError(CosimError, FloatingPointError):
    """The loss became NaN or infinite; the last good weights were kept."""


class SolverError(CosimError):
    """A nodal solve did not converge to the requested KCL residual."""


class SpiceError(CosimError):
    """An ngspice run failed; ``deck`` and ``log`` name the files kept for inspection."""

    def __init__(self, message, deck=None, log=None):
        detail = message
        if deck is not None:
            detail += f"\n  deck kept at: {deck}"
        if log is not None:
            detail += f"\n  log kept at:  {log}"
        super().__init__(detail)
        self.deck = deck
        self.log = log


class NgspiceNotFoundError(SpiceError):
    """No ngspice executable or shared library could be found."""


class UnsafeDeckError(CosimError, ValueError):
    """A deck, or a file it includes, holds lines ngspice would execute or read unchecked."""


class MemoryLimitError(CosimError, ValueError):
    """The requested sizes would need more memory than the machine has; nothing was allocated."""


class OutputPathError(CosimError, OSError):
    """An output file or folder cannot be written (checked before the work starts)."""


class DataFileError(CosimError, ValueError):
    """A data file (.npz of x, y) is unreadable, malformed or too large."""
