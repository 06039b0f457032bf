#!/usr/bin/env bash
# Lowest declared versions (issue 15, item 6): the floors pyproject.toml declares for timm, transformers, datasets,
# accelerate, safetensors and huggingface-hub (+ pyarrow, pillow), pinned in .ci/lowest.txt (tests/test_dependencies.py
# keeps the two equal), installed into a separate virtual environment on top of the CI one (its torch / torchvision
# are used, not installed twice), then the loading, card, push, training and mining tests run with them (test_card_code.py: every recipe
# trained 2 steps, pushed, its card's code blocks run against these versions).
# Any failure (environment, install, versions, tests) exits non-zero: a red CI step, never a skip.
# Run by .ci/run after the main test command; on its own (after `pip install -e ".[test]"`): .ci/lowest.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1
echo "=== lowest declared versions (.ci/lowest.txt) ==="
start=$SECONDS
lowest="${MIMCL_LOWEST_VENV:-${TMPDIR:-/tmp}/mimcl-lowest-venv}"
rm -rf "$lowest"
python -m venv --system-site-packages "$lowest" \
    || { rm -rf "$lowest" && pip install -q virtualenv && python -m virtualenv --system-site-packages "$lowest"; }
# When CI's python is itself a virtual environment, --system-site-packages shows the base interpreter's packages, not
# CI's: add CI's site directories (after the lowest venv's own, so its pins still win; addsitedir also runs their .pth
# files, i.e. the editable install of this checkout).
parent_sites=$(python -c 'import sysconfig; p = sysconfig.get_paths(); print(repr(list(dict.fromkeys([p["purelib"], p["platlib"]]))))')
"$lowest/bin/python" - "$parent_sites" <<'PY'
import pathlib, sys, sysconfig
pth = pathlib.Path(sysconfig.get_paths()["purelib"]) / "_mimcl_ci_parent.pth"
pth.write_text(f"import site; list(map(site.addsitedir, {sys.argv[1]}))\n")   # a .pth line: no comprehension scope
PY
"$lowest/bin/python" -m pip install -q -r .ci/lowest.txt
"$lowest/bin/python" .ci/lowest_versions.py .ci/lowest.txt     # prints what runs; exits 1 if a pin is not what imports
echo "=== installed in $((SECONDS - start)) s; tests ==="
"$lowest/bin/python" -m pytest -q -p no:cacheprovider \
    tests/test_encoder_loading.py tests/test_save.py tests/test_card.py tests/test_push.py tests/test_transient_errors.py \
    tests/test_mining.py tests/test_hub_mixin.py tests/test_card_code.py \
    "tests/test_train.py::test_short_run_saves_checkpoints_and_a_loadable_encoder" \
    "tests/test_train.py::test_sigterm_in_process_raises_training_interrupted_with_the_checkpoint" \
    "tests/test_reliability.py::test_resume_never_unpickles_code_from_a_checkpoint"
echo "=== lowest declared versions: passed in $((SECONDS - start)) s ==="
