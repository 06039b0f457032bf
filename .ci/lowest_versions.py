"""Print the versions this interpreter really imports of the packages pinned in .ci/lowest.txt (plus torch,
torchvision, numpy, Python), and exit 1 when any differs from its pin: the lowest-versions CI step runs it before
the tests, so a pin that pip did not honour (or a system copy shadowing the environment's) fails loudly.

    python .ci/lowest_versions.py [.ci/lowest.txt]
"""

from __future__ import annotations

import platform
import re
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

PIN = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([^\s#;]+)")


def read_pins(path: Path) -> dict[str, str]:
    """``{package: version}`` of the ``package==version`` lines of ``path`` (comments and blank lines skipped)."""
    pins = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        match = PIN.match(text)
        if not match:
            raise SystemExit(f"{path}:{number}: expected 'package==version', got {line!r}")
        pins[match.group(1)] = match.group(2)
    return pins


def main(argv: list[str]) -> int:
    path = Path(argv[0]) if argv else Path(__file__).with_name("lowest.txt")
    pins = read_pins(path)
    wrong = []
    print(f"lowest-versions environment: Python {platform.python_version()} ({sys.executable})")
    for name in [*pins, *(n for n in ("torch", "torchvision", "numpy", "tokenizers", "pyarrow") if n not in pins)]:
        try:
            found = version(name)
        except PackageNotFoundError:
            found = "not installed"
        expected = pins.get(name)
        mark = "" if expected is None else ("  (pinned)" if found == expected else f"  != pinned {expected}")
        print(f"  {name:<18} {found}{mark}")
        if expected is not None and found != expected:
            wrong.append(f"{name} {found} (pinned {expected})")
    if wrong:
        print(f"{path}: not the pinned versions: {', '.join(wrong)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
