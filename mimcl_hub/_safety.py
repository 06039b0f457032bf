"""Guards for values that come from untrusted places: names read from model cards, ``config.json``,
checkpoint metadata, dataset rows or Hub listings, and numeric settings.

- :func:`check_relative_name` / :func:`safe_join`: a file name joined to a folder never leaves that folder
  (no absolute path, no ``..`` segment, no drive or backslash, no NUL, no symlink pointing outside).
- :func:`check_repo_id`: ``NAMESPACE/NAME`` as the Hub accepts it (``huggingface_hub.utils.validate_repo_id``),
  never a path.
- :func:`check_number`: a numeric setting within its allowed range; the message names the setting and the range.

Every failure is a ``ValueError`` naming what was checked and where it came from.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any, Optional, Union

__all__ = ["HUB_ID", "check_number", "check_output_apart", "check_relative_name", "check_repo_id", "check_seed", "is_int",
           "is_number", "overlaps",
           "is_within", "looks_like_hub_id", "safe_join"]

_DRIVE = re.compile(r"^[A-Za-z]:")

#: A Hub id as users type it for datasets and models: ``NAME`` or ``NAMESPACE/NAME`` (no path syntax).
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def is_int(value: Any) -> bool:
    """True for Python / numpy integers, never for bools."""
    import numpy as np

    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def is_number(value: Any) -> bool:
    """True for finite Python / numpy ints and floats, never for bools."""
    import numpy as np

    return (isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
            and math.isfinite(value))


def looks_like_hub_id(value: Any) -> bool:
    """True when ``value`` reads as a Hub id (``NAME`` or ``ORG/NAME``) rather than a path: no leading ``.``,
    ``/`` or ``~``, no trailing slash, at most one ``/``."""
    return isinstance(value, str) and not value.startswith((".", "/", "~")) and bool(HUB_ID.match(value))


def check_relative_name(name: Any, what: str = "file name") -> str:
    """``name`` as a clean relative POSIX path (``"heads/config.json"``); ``ValueError`` for anything that
    could point elsewhere: absolute paths, ``..`` segments, Windows drives / backslashes, NUL bytes, ``~``."""
    if isinstance(name, os.PathLike):
        name = os.fspath(name)
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"{what} {name!r}: expected a non-empty relative file name")
    if "\x00" in name:
        raise ValueError(f"{what} {name!r}: contains a NUL byte")
    if "\\" in name or _DRIVE.match(name):
        raise ValueError(f"{what} {name!r}: backslashes and drive letters are not allowed (use a/b POSIX names)")
    if name.startswith(("/", "~")):
        raise ValueError(f"{what} {name!r}: must be relative to its folder, not an absolute path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if not parts:
        raise ValueError(f"{what} {name!r}: names no file")
    if ".." in parts:
        raise ValueError(f"{what} {name!r}: '..' would leave the folder it belongs to")
    return "/".join(parts)


def is_within(path: Union[str, os.PathLike], root: Union[str, os.PathLike]) -> bool:
    """True when ``path`` (symlinks resolved) is ``root`` or inside it."""
    real_root = Path(os.path.realpath(root))
    real = Path(os.path.realpath(path))
    return real == real_root or real_root in real.parents


def safe_join(root: Union[str, os.PathLike], name: Any, what: str = "file name") -> Path:
    """``root / name`` after :func:`check_relative_name`, refused (``ValueError``) when it resolves outside
    ``root`` — e.g. through a symlink inside ``root`` that points elsewhere."""
    rel = check_relative_name(name, what)
    target = Path(root).joinpath(*rel.split("/"))
    if not is_within(target, root):
        raise ValueError(f"{what} {name!r}: resolves to {os.path.realpath(target)}, outside {os.path.realpath(root)}")
    return target


def check_repo_id(repo_id: Any, what: str = "repo id") -> str:
    """``repo_id`` if it is a Hub ``NAMESPACE/NAME`` id (validated by huggingface_hub), else ``ValueError``."""
    if not isinstance(repo_id, str) or repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise ValueError(f"invalid {what} {repo_id!r}: expected NAMESPACE/NAME (e.g. your-name/vit-tiny-infoaug)")
    if any(part in (".", "..") for part in repo_id.split("/")):
        raise ValueError(f"invalid {what} {repo_id!r}: '.' and '..' are not names")
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as e:
        raise ValueError(f"invalid {what} {repo_id!r}: {e}") from e
    return repo_id


def _num(v) -> str:
    return str(v) if isinstance(v, int) else f"{v:g}"


def _range_text(low, high, low_open: bool, high_open: bool) -> str:
    """``in [a, b]`` / ``in (a, b]`` for two bounds, ``>= a`` / ``< b`` for one."""
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{_num(low)}, {_num(high)}{')' if high_open else ']'}"
    if low is not None:
        return f"{'>' if low_open else '>='} {_num(low)}"
    if high is not None:
        return f"{'<' if high_open else '<='} {_num(high)}"
    return ""


def check_number(name: str, value: Any, low: Optional[float] = None, high: Optional[float] = None, *,
                 integer: bool = False, low_open: bool = False, high_open: bool = False,
                 allow_none: bool = False) -> Any:
    """``value`` when it is a (finite) number in the range, else ``ValueError`` naming ``name`` and the range.

    ``integer=True`` needs an int (bools are refused everywhere); ``low_open`` / ``high_open`` exclude the
    bounds; ``allow_none`` lets ``None`` through (an unset optional setting)."""
    if value is None and allow_none:
        return value
    kind = "an int" if integer else "a number"
    text = _range_text(low, high, low_open, high_open)
    if low is None and high is None:
        kind, text = ("a finite int" if integer else "a finite number"), ""
    ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    try:
        import numpy as np

        ok_type = ok_type or isinstance(value, np.integer if integer else (np.integer, np.floating))
    except ImportError:  # pragma: no cover
        pass
    if isinstance(value, bool) or not ok_type or not math.isfinite(float(value)):
        raise ValueError(f"{name} must be {kind}{' ' + text if text else ''}" + (" (or unset)" if allow_none else "")
                         + f", got {value!r}")
    v = float(value)
    if (low is not None and (v < low or (low_open and v == low))) or \
            (high is not None and (v > high or (high_open and v == high))):
        raise ValueError(f"{name} must be {kind} {text}" + (" (or unset)" if allow_none else "")
                         + f", got {value!r}")
    return value


def check_seed(value: Any, name: str = "seed") -> int:
    """``value`` as an int seed in [0, 2**32 - 1] (what ``torch`` / ``numpy`` seeding accepts), else ``ValueError``."""
    return int(check_number(name, value, 0, 2**32 - 1, integer=True))


def overlaps(a: Union[str, os.PathLike], b: Union[str, os.PathLike]) -> bool:
    """True when path ``a`` is ``b``, lies inside it, or contains it (symlinks resolved; paths need not exist)."""
    return is_within(a, b) or is_within(b, a)


def check_output_apart(output: Union[str, os.PathLike], sources: dict, what: str = "--output") -> None:
    """Refuse an output path that is, contains or lies inside one of ``sources`` (``{flag: path}``; entries that
    are not existing local paths — Hub ids, built-in names, None — are skipped). Writing such an output could
    replace or delete the inputs (``mimcl mine DIR --output DIR --overwrite`` once deleted the videos it read).
    Raises ``ValueError`` naming both flags and paths; call it before any work."""
    if output is None:
        return
    for flag, source in sources.items():
        if source is None or not isinstance(source, (str, os.PathLike)) or not os.path.exists(source):
            continue
        if overlaps(output, source):
            how = ("is" if os.path.realpath(output) == os.path.realpath(source)
                   else "lies inside" if is_within(output, source) else "contains")
            raise ValueError(f"{what} {os.fspath(output)!r} {how} the input {flag} {os.fspath(source)!r}: writing "
                             f"it could replace or delete that input; choose an output outside every input")
