"""Dependencies you can trust (issue 15, item 6): every package mimcl_hub imports is declared in pyproject.toml (none
is left to arrive as another package's dependency), and the floors pyproject.toml declares are the versions the
lowest-versions CI step (.ci/lowest.sh) installs and tests (.ci/lowest.txt), so the two never drift apart."""

import ast
import re
import sys
import runpy
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: the packages whose floors the CI step installs and tests (issue 15, item 6)
CHECKED = {"timm", "transformers", "datasets", "accelerate", "safetensors", "huggingface-hub"}


def _pyproject_floors() -> dict[str, str]:
    """``{name: floor}`` of the ``name>=floor`` entries of ``[project] dependencies`` (read without a TOML
    library: the list is one entry a line)."""
    text = (ROOT / "pyproject.toml").read_text()
    block = re.search(r"^dependencies = \[\n(.*?)^\]", text, re.S | re.M)
    assert block, "pyproject.toml: no [project] dependencies list"
    floors = {}
    for entry in re.findall(r'"([^"]+)"', block.group(1)):
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)\s*>=\s*([^,;\s]+)(.*)", entry)
        assert match, f"pyproject.toml: dependency {entry!r} has no '>=' floor"
        floors[match.group(1).lower().replace("_", "-")] = match.group(2)
    return floors


#: import name -> distribution name, where they differ
_DISTRIBUTIONS = {"PIL": "pillow", "cv2": "opencv-python-headless", "sklearn": "scikit-learn", "yaml": "pyyaml",
                  "huggingface_hub": "huggingface-hub"}


def _imported_packages() -> dict[str, str]:
    """``{top-level module: first file importing it}`` of every absolute, non-stdlib import in mimcl_hub/."""
    found = {}
    for path in sorted((ROOT / "mimcl_hub").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top != "mimcl_hub":
                    found.setdefault(top, str(path.relative_to(ROOT)))
    return found


#: extras for developing mimcl_hub, not features of it: a package only they list is no dependency of the package
_DEVELOPMENT_EXTRAS = {"test", "dev", "bench"}


def _optional_dependencies() -> set[str]:
    """Names of the packages the feature extras of ``[project.optional-dependencies]`` list (``tracking``,
    ``examples``, ...: imported only where installed), without the development extras."""
    text = (ROOT / "pyproject.toml").read_text()
    section = re.search(r"^\[project\.optional-dependencies\]\n(.*?)(?=^\[)", text, re.S | re.M)
    assert section, "pyproject.toml: no [project.optional-dependencies]"
    body = "\n".join(line.split("#", 1)[0] for line in section.group(1).splitlines())
    names = set()
    for extra, entries in re.findall(r"^([A-Za-z0-9][\w-]*)\s*=\s*\[(.*?)\]", body, re.S | re.M):
        if extra not in _DEVELOPMENT_EXTRAS:
            names |= {re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", entry).group(0).lower().replace("_", "-")
                      for entry in re.findall(r'"([^"]+)"', entries)}
    return names


def test_every_imported_package_is_a_declared_dependency():
    """No direct import of a transitive package (e.g. httpx2, which only huggingface_hub 2.x brings): every package
    mimcl_hub imports is a [project] dependency, or an optional one (an extra) for the imports guarded by one."""
    imported = _imported_packages()
    declared = set(_pyproject_floors()) | _optional_dependencies()
    assert {"pyyaml", "huggingface-hub"} <= set(_pyproject_floors()) and "scikit-video" in _optional_dependencies()
    assert {"torch", "timm", "transformers", "datasets", "huggingface_hub"} <= set(imported)   # the scan works
    undeclared = {module: where for module, where in imported.items()
                  if _DISTRIBUTIONS.get(module, module).lower().replace("_", "-") not in declared}
    assert not undeclared, f"imported by mimcl_hub but not in pyproject.toml [project] dependencies: {undeclared}"


def test_lowest_txt_pins_exactly_the_pyproject_floors():
    """Every pin of .ci/lowest.txt is the ``>=`` floor pyproject.toml declares for that package, and the six
    packages of issue 15 item 6 are all pinned."""
    pins = runpy.run_path(str(ROOT / ".ci" / "lowest_versions.py"))["read_pins"](ROOT / ".ci" / "lowest.txt")
    pins = {name.lower().replace("_", "-"): v for name, v in pins.items()}
    floors = _pyproject_floors()
    assert CHECKED <= set(pins), f".ci/lowest.txt pins {sorted(pins)}, missing {sorted(CHECKED - set(pins))}"
    drift = {name: (floors.get(name), pins[name]) for name in pins if floors.get(name) != pins[name]}
    assert not drift, f"floor in pyproject.toml != pin in .ci/lowest.txt: {drift}"


def test_the_pin_reader_refuses_a_malformed_line(tmp_path):
    import pytest

    read_pins = runpy.run_path(str(ROOT / ".ci" / "lowest_versions.py"))["read_pins"]
    path = tmp_path / "lowest.txt"
    path.write_text("# comment\ntimm==1.0.31  # why\n\n")
    assert read_pins(path) == {"timm": "1.0.31"}
    path.write_text("timm>=1.0.31\n")
    with pytest.raises(SystemExit, match="lowest.txt:1: expected 'package==version'"):
        read_pins(path)
