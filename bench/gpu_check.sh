#!/usr/bin/env bash
# GPU check: the CUDA tests and the GPU benchmarks of mimcl_hub in one run (under 8 minutes on one GPU).
#
#   bash bench/gpu_check.sh            # full run  (7.5 min at most: a global time budget caps every part)
#   bash bench/gpu_check.sh --quick    # shorter benchmarks (5.5 min at most)
#
# Parts, each under `timeout`; a failing part does not stop the others:
#   env        nvidia-smi summary; torch / CUDA / cuDNN versions, the device, bf16 support, library versions
#   gpu_tests  python -m pytest -m gpu -q   (tests/test_gpu.py: CUDA KSG = CPU kernel, bf16 training steps,
#              find_twins(device="cuda") = CPU)
#   mi         bench/mi_throughput.py --device cuda --device_only --num_patches 1024 --samples 24:
#              pairwise_mi pairs/s on the GPU (float32, float64) vs the compiled CPU kernel, P = 1024, N = 24, d = 2
#   train      bench/train_throughput.py --device cuda --workers 8 --video_dataset scenes:160: resnet18_cifar SimCLR
#              (both InfoAug branches) at batch 256, bf16: bare step vs the full train() loop, and vs lightly
#              (skipped with the reason when lightly is not installed)
#   data_wait  bench/train_throughput.py --device cuda --data_wait 0,4,8: share of the full loop's time blocked
#              in next(loader) with 0 / 4 / 8 DataLoader workers
# Numbers are printed as `RESULT name value` lines (the benches' `RESULT name=value` lines are rewritten so);
# the run ends with a summary of the parts (PASS / FAIL / TIMEOUT / SKIPPED) and exits 1 if a part failed.
# Without a CUDA device the CUDA parts print "skipped: no CUDA device" and the script exits 0.
#
# Installation: nothing is installed (the GPU machine has no network). The script puts this checkout first on
# PYTHONPATH, so it checks this code even when another copy of mimcl_hub is installed; the dependencies must
# be there already (`pip install -e ".[test]"`; lightly is optional: `pip install -e ".[bench]"`). Data and
# models are offline (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE): the bundled clips and procedural scenes, mined
# once into the datasets cache by the first part that needs them.

set -u -o pipefail

QUICK=0
for arg in "$@"; do
    case "$arg" in
        --quick) QUICK=1 ;;
        -h|--help) sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "gpu_check.sh: unknown argument '$arg' (use --quick or --help)" >&2; exit 2 ;;
    esac
done

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 2
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONUNBUFFERED=1 TQDM_DISABLE=1 HF_DATASETS_DISABLE_PROGRESS_BARS=1
PY="${PYTHON:-python}"

if (( QUICK )); then
    BUDGET=330; MODE="--quick"
    T_ENV=30; T_TESTS=120; T_MI=45; T_TRAIN=150; T_WAIT=100
else
    BUDGET=450; MODE=""
    T_ENV=30; T_TESTS=120; T_MI=60; T_TRAIN=180; T_WAIT=120
fi
DEADLINE=$((SECONDS + BUDGET))
NAMES=(); STATES=()

record() { NAMES+=("$1"); STATES+=("$2"); echo "--- $1: $2"; }

# run_part NAME LIMIT_S CMD...: CMD under `timeout` (capped by what is left of the budget), output streamed with
# RESULT name=value rewritten to RESULT name value; the outcome goes to the summary.
run_part() {
    local name=$1 limit=$2; shift 2
    local left=$((DEADLINE - SECONDS - 5))
    if (( left < 15 )); then
        echo; echo "=== $name"
        record "$name" "SKIPPED (the ${BUDGET} s budget is used up)"
        return
    fi
    (( limit > left )) && limit=$left
    echo; echo "=== $name (timeout ${limit} s): $*"
    local t0=$SECONDS
    timeout --kill-after=10 "$limit" "$@" 2>&1 | sed -u -E 's/^RESULT ([^ =]+)=/RESULT \1 /'
    local rc=${PIPESTATUS[0]}
    local took=$((SECONDS - t0))
    if (( rc == 0 )); then
        record "$name" "PASS (${took} s)"
    elif (( rc == 124 || rc == 137 )); then
        record "$name" "TIMEOUT (after ${limit} s)"
    else
        record "$name" "FAIL (exit code $rc, ${took} s)"
    fi
}

skip_part() { echo; echo "=== $1"; echo "skipped: $2"; record "$1" "SKIPPED ($2)"; }

echo "# mimcl_hub GPU check ($( ((QUICK)) && echo quick || echo full ) run, budget ${BUDGET} s) in $ROOT"
echo "# $(date -u '+%Y-%m-%d %H:%M:%S UTC'), $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo 'no git') "

if ! IMPORT_ERR=$("$PY" -c "import mimcl_hub, torch, timm, accelerate, datasets, numba, cv2, pytest" 2>&1); then
    echo "mimcl_hub or a dependency cannot be imported with $PY (nothing is installed by this script; run"
    echo "pip install -e \".[test]\" first):"
    echo "$IMPORT_ERR" | tail -3
    record setup "FAIL (imports)"
    echo "RESULT parts_failed 1"
    exit 1
fi
CUDA=$("$PY" -c "import torch; print(int(torch.cuda.is_available()))" 2>/dev/null || echo 0)

# --- env ----------------------------------------------------------------------------------------------------
env_report() {
    if command -v nvidia-smi >/dev/null 2>&1; then
        nvidia-smi -L
        nvidia-smi --query-gpu=index,name,memory.total,memory.used,utilization.gpu,temperature.gpu,power.draw,power.limit,driver_version --format=csv
    else
        echo "nvidia-smi: not found"
    fi
    "$PY" - <<'EOF'
import importlib, os, platform
import torch
import mimcl_hub

print(f"python {platform.python_version()}, torch {torch.__version__}, CUDA (torch build) {torch.version.cuda}, "
      f"cuDNN {torch.backends.cudnn.version()}, {os.cpu_count()} CPUs")
print(f"mimcl_hub {mimcl_hub.__version__} from {os.path.dirname(mimcl_hub.__file__)}")
versions = []
for name in ("timm", "accelerate", "datasets", "transformers", "numba", "lightly"):
    try:
        versions.append(f"{name} {importlib.import_module(name).__version__}")
    except ImportError:
        versions.append(f"{name} missing")
print(", ".join(versions))
n = torch.cuda.device_count() if torch.cuda.is_available() else 0
print(f"RESULT cuda_devices {n}")
for i in range(n):
    p = torch.cuda.get_device_properties(i)
    print(f"cuda:{i} {p.name}, capability {p.major}.{p.minor}, {p.total_memory / 2**30:.1f} GiB, "
          f"{p.multi_processor_count} SMs, bf16 {torch.cuda.is_bf16_supported()}")
    if i == 0:
        print(f"RESULT gpu_memory_gib {p.total_memory / 2**30:.1f}")
        print(f"RESULT gpu_compute_capability {p.major}.{p.minor}")
EOF
}
export -f env_report
export PY
run_part env "$T_ENV" bash -c env_report

# --- CUDA tests ---------------------------------------------------------------------------------------------
TESTS_LOG=$(mktemp)
run_part gpu_tests "$T_TESTS" bash -c "set -o pipefail; '$PY' -m pytest -m gpu -q -p no:cacheprovider 2>&1 | tee '$TESTS_LOG'"
SUMMARY_LINE=$(grep -E '^=*\s*[0-9]+ (passed|failed|skipped|error|deselected)' "$TESTS_LOG" | tail -1 || true)
for kind in passed failed skipped error; do
    count=$(echo "$SUMMARY_LINE" | grep -oE "[0-9]+ $kind" | grep -oE '^[0-9]+' || true)
    echo "RESULT gpu_tests_$kind ${count:-0}"
done
rm -f "$TESTS_LOG"
if (( ! CUDA )); then echo "(no CUDA device: the gpu tests skip; that is the expected result here)"; fi

# --- benchmarks on the GPU ----------------------------------------------------------------------------------
if (( CUDA )); then
    run_part mi "$T_MI" "$PY" bench/mi_throughput.py --device cuda --device_only --num_patches 1024 --samples 24 $MODE
    run_part train "$T_TRAIN" "$PY" bench/train_throughput.py --device cuda --workers 8 --video_dataset scenes:160 \
        --max-wait 0 $MODE
    run_part data_wait "$T_WAIT" "$PY" bench/train_throughput.py --device cuda --data_wait 0,4,8 --skip-formats \
        --skip-loop --skip-peer --video_dataset scenes:160 --max-wait 0 $MODE
else
    skip_part mi "no CUDA device"
    skip_part train "no CUDA device"
    skip_part data_wait "no CUDA device"
fi

# --- summary ------------------------------------------------------------------------------------------------
echo
echo "=== summary ($SECONDS s)"
passed=0; failed=0; skipped=0
for i in "${!NAMES[@]}"; do
    printf '%-10s %s\n' "${NAMES[$i]}" "${STATES[$i]}"
    case "${STATES[$i]}" in
        PASS*) passed=$((passed + 1)) ;;
        SKIPPED*) skipped=$((skipped + 1)) ;;
        *) failed=$((failed + 1)) ;;
    esac
done
echo "RESULT parts_passed $passed"
echo "RESULT parts_failed $failed"
echo "RESULT parts_skipped $skipped"
echo "RESULT gpu_check_seconds $SECONDS"
(( failed == 0 ))
