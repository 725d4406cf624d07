#!/usr/bin/env bash
# The GPU leg in one device call (docs/gpu.md): smoke test of every CUDA path, benchmarks,
# throughput, time-budgeted training and fp16 weights, everything logged under $OUT.
#
#   bash benchmarks/gpu_leg.sh PRESET BUDGET_S [INIT_WEIGHTS]
#
# PRESET: paper | compact; BUDGET_S: training seconds (cut to what the leg's deadline leaves);
# INIT_WEIGHTS: a weights directory or shipped name (default: the shipped weights of PRESET,
# else from scratch). Needs the data pack (.pack/, python benchmarks/make_data_pack.py) in the
# checkout. Runs on a CPU too (CUDA-only checks skipped, sizes shrunk; LEG_* variables, see
# benchmarks/gpu_leg.py). $OUT (default out/leg) receives leg.log, leg.json, scalars.csv and
# weights/: at most 8 files. Exit status 0 when the leg trained and exported.
set -u -o pipefail
if [ $# -lt 2 ] || [ $# -gt 3 ]; then
    echo "usage: bash benchmarks/gpu_leg.sh PRESET BUDGET_S [INIT_WEIGHTS]" >&2
    exit 2
fi
export LEG_T0="${LEG_T0:-$(date +%s.%N)}"   # the leg's deadline counts from here
cd "$(dirname "$0")/.." || exit 2
OUT="${OUT:-$PWD/out/leg}"
mkdir -p "$OUT" || exit 2
PY="${PYTHON:-python3}"
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"   # the checkout itself: nothing to install
# wheels that travel with the checkout (.whl/, named in carry): installed outside it
if compgen -G ".whl/*.whl" >/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/leg-site .whl/*.whl >&2 || exit 2
    export PYTHONPATH="$PYTHONPATH:/tmp/leg-site"
fi
{
    echo "gpu_leg.sh $*: $(date -u +%FT%TZ) on $(hostname), $(nproc) CPUs, OUT=$OUT"
    "$PY" benchmarks/gpu_leg.py "$@" --out "$OUT"
} 2>&1 | tee "$OUT/leg.log"
exit "${PIPESTATUS[0]}"
