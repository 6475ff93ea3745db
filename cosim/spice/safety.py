"""Deck safety: what ngspice would execute or read is checked before any deck runs.

Netlists are programs: ngspice runs ``.control`` blocks, ``*#`` comment lines and
``*ng_script`` files as commands (``shell`` starts any program), and reads every
``.include``d file as part of the deck.  :func:`resolve_deck` checks a deck and every
file it includes and returns one self-contained text, so ngspice reads exactly what was
checked.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import UnsafeDeckError

__all__ = ["check_deck_safe", "resolve_deck"]

_UNSAFE_PREFIXES = (".control", ".endc", "*#", "shell", ".exec", "!", "*ng_script")
_INCLUDE_CARD = re.compile(r"^\s*\.(include|inc|lib)\b(.*)$", re.I)
_MAX_INCLUDE_DEPTH = 8
_MAX_DECK_BYTES = 256 * 2**20


def check_deck_safe(text: str, allowed: tuple[str, ...] = (), source: str = "deck") -> None:
    """Raise UnsafeDeckError if a deck holds lines that would execute commands.

    Flags (case-insensitive, after leading blanks) lines starting with ``.control``,
    ``.endc``, ``*#`` (ngspice runs ``*#`` comment lines as commands), ``*ng_script`` (makes
    the file a command script), ``shell``, ``.exec`` or ``!``, and NUL characters.
    ``allowed`` lists exact lines the caller itself appended that are exempt.  This checks
    one text; :func:`resolve_deck` checks a deck together with every file it includes.
    """
    if not isinstance(text, str):
        raise TypeError(f"deck must be a string, got {type(text).__name__}")
    allowed_set = {a.strip() for a in allowed}
    bad = []
    for n, line in enumerate(text.splitlines(), 1):
        s = line.lstrip().lower()
        if s.startswith(_UNSAFE_PREFIXES) and line.strip() not in allowed_set:
            bad.append(f"line {n}: {line[:60]!r}")
    if "\x00" in text:
        bad.append("NUL character")
    if bad:
        raise UnsafeDeckError(f"{source} contains command lines (ngspice would execute "
                              f"them): " + "; ".join(bad[:5]))


def _include_target(rest: str, source: str) -> str:
    """The file name of an ``.include`` card (quotes optional), checked to be one name."""
    name = rest.strip()
    if len(name) >= 2 and name[0] == name[-1] and name[0] in "\"'":
        name = name[1:-1]
    if not name or any(c in name for c in "\"'") or not name.isprintable():
        raise UnsafeDeckError(f"{source}: bad .include file name {rest.strip()[:80]!r}")
    return name


def resolve_deck(text: str, base=None) -> str:
    """The deck with every ``.include`` replaced by the checked text of that file.

    Every file ngspice would read is checked with :func:`check_deck_safe` and inlined, so
    ngspice reads exactly the checked text (no file can change between the check and the
    run).  Relative names are resolved from the including file's folder (``base`` for
    the top-level deck, default the current folder), as ngspice does.  Raises
    UnsafeDeckError for command lines, ``.lib`` cards, include cycles, more than
    8 levels, a missing or unreadable file or more than 256 MB in all.
    """
    check_deck_safe(text)
    base = Path.cwd() if base is None else Path(base)
    total = [len(text)]

    def expand(body: str, folder: Path, chain: tuple, source: str) -> list[str]:
        out = []
        for n, line in enumerate(body.splitlines(), 1):
            m = _INCLUDE_CARD.match(line)
            if m is None:
                out.append(line)
                continue
            where = f"{source} line {n}"
            if m.group(1).lower() == "lib":
                raise UnsafeDeckError(f"{where}: .lib cards are not supported; use .include "
                                      f"of the file (got {line.strip()[:80]!r})")
            target = (folder / Path(_include_target(m.group(2), where)).expanduser()).resolve()
            if target in chain:
                raise UnsafeDeckError(f"{where}: {target} includes itself (include cycle)")
            if len(chain) >= _MAX_INCLUDE_DEPTH:
                raise UnsafeDeckError(f"{where}: more than {_MAX_INCLUDE_DEPTH} levels of "
                                      f".include")
            try:
                size = target.stat().st_size
                if size + total[0] > _MAX_DECK_BYTES:
                    raise UnsafeDeckError(f"{where}: the deck with its includes exceeds "
                                          f"{_MAX_DECK_BYTES >> 20} MB ({target})")
                included = target.read_bytes().decode("utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise UnsafeDeckError(f"{where}: cannot read included file {target}: "
                                      f"{exc}") from exc
            total[0] += len(included)
            check_deck_safe(included, source=f"included file {target}")
            out.append(f"* ---- begin .include {target.name} (inlined by cosim)")
            out += expand(included, target.parent, chain + (target,), f"included file {target}")
            out.append(f"* ---- end .include {target.name}")
        return out

    lines = expand(text, base, (), "deck")
    return "\n".join(lines) + "\n"
