#!/usr/bin/env bash
# One GPU check of the speed work (issue 14). By default it measures the two targets — the quick
# study's wall time (a) and the projected cifar10 grid (k), after warming the caches (w) — in
# 280 s at most (every step time-limited) on one H100/H200. Run from the repo root:
#     OUT_DIR=/tmp/gpu-check bash benchmarks/gpu_check.sh          # log: $OUT_DIR/gpu_check.log
#     GPU_CHECK_STEPS=diagnose ... (h s t: correctness and where the time goes, <= 190 s)
#     GPU_CHECK_STEPS=all ...      (every step below: 1,155 s of limits, more than a lent
#                                   machine's 15 minutes)
#     GPU_CHECK_STEPS="a d" ...    (the steps named)
#     GPU_CHECK_DRY=1 ...          (print each chosen step and its limit; run nothing)
# Needs python3 with torch (+ the project's deps, e.g. wheels on PYTHONPATH); no venv.
# Steps (each time-limited; a failure is logged and the next step runs), most wanted first:
#   w) warm the caches an installed environment has (benchmarks/warm_caches.py): the device
#      image keeps no .pyc (each process compiled its imports: 6.9 s of a profiled quick study
#      on an H100) and has no matplotlib font cache; .pyc go to $PYTHONPYCACHEPREFIX
#   a) quick study wall time on CUDA (generator groups, batched cells, CUDA graphs) (≤ 30 s)
#   h) correctness on the GPU: graphed generator groups, cell groups and sampling equal eager
#      ones (tests/test_stepgraph.py's CUDA test, which also prints eager-vs-eager noise;
#      skipped, rc 0, on a CPU)
#   s) the host's speed at host work (benchmarks/host_speed.py): CPU facts, a Python loop and
#      one analyses figure alone and right after multi-threaded torch CPU work (the H100
#      machine drew the study's figures ~4x slower than the 2-vCPU one: is it the host or
#      torch's spinning threads?)
#   t) where a step's time goes (benchmarks/gpu_trace.py): wall vs kernel ms per step and the
#      model arithmetic achieved, top kernels, of the 9 quick generators and of 36 quick cells
#      as graphed groups, of sampling one quick set (4,096-row blocks, 39 % real rows; and in
#      1,024-row blocks) and of
#      the cifar10 generator alone; arms: default, cudnn.benchmark,
#      + TF32 matmuls (is a loop bound by the GPU or the host, and by which kernels?)
#   k) cifar10 projected grid with the airbench classifier and the preset's compiled generator,
#      with each task's fixed costs (set-up, compilation, checkpoints, scoring) added
#      (target ≤ 2 GPU-hours; compiling the 36M-parameter net ran past 80 s on an H100)
#   (only if GPU_CHECK_STEPS names them:)
#   d) quick generators: 9 one by one vs one group, eager and CUDA-graphed
#      (benchmarks/generators.py, 1.6 kimg each; H100: graphed group 6.87x one by one)
#   c) quick cells: one by one vs groups of 16, eager and graphed (benchmarks/cells.py;
#      H100: graphed groups 47.9x), then their scoring one by one vs together
#   b) step k with an eager generator (H100: 7.91 h projected before fixed costs, 38 s)
#   g) the quick study again with SYNTHEQUIV_CUDA_GRAPHS=0: each stage eager vs step a's
#      (H100: 87.5 s against 63.5 s graphed)
#   f) the analyses' small classifiers one by one vs in groups, eager and graphed (its first
#      H100 try ran past 80 s; steps a and g show the stage graphed and eager anyway)
#   e) cifar10 generator training: eager/foreach Adam vs fused Adam vs torch.compile
#      (measured on an H200 before: compile 1.33×)
#   p) where the quick study's wall time goes: import and CUDA start-up seconds, then the
#      study under cProfile (benchmarks/study.py --profile; stats in $OUT_DIR/quick.prof)
# GPU_CHECK_TP_ARGS adds arguments to steps b and k.
# The quick runs' log.txt and summary.json are copied to $OUT_DIR (quick_log.txt, quick.json,
# quick_eager.json).
# CPU smoke test of this script (shrunk work, ~4 min on 2 cores):
#     GPU_CHECK_DEVICE=cpu OUT_DIR=/tmp/gc bash benchmarks/gpu_check.sh
set -x
DEVICE=${GPU_CHECK_DEVICE:-cuda}
OUT_DIR=${OUT_DIR:-${OUT:-/tmp/gpu-check}}
DRY=${GPU_CHECK_DRY:-}
[ -z "$DRY" ] || OUT_DIR=$(mktemp -d)  # a dry run touches nothing of a real check's
mkdir -p "$OUT_DIR"
LOG="$OUT_DIR/gpu_check.log"
export PYTHONPATH="src:${PYTHONPATH:-}" PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
if [ "$DEVICE" = cpu ]; then  # shrink every step to a smoke test
  STUDY_SET=(--set splits.base_per_class=[5,10] --set grid.seeds=[0] --set generator.train_kimg=1.0
             --set generator.warmup_kimg=0.2 --set sampling.steps=3 --set classifier.train_steps=20
             --set analysis.enabled=false --set equivalence.bootstrap=20)
  TP=(--preset quick --device cpu --steps 2); CELLS=(--cells 6 --steps 20 --groups 3,6)
  STAGES=(--preset quick --device cpu --steps 2 --repeats 1)
  ANALYSES=(--device cpu --set analysis.domain_train_steps=20 --set classifier.train_steps=20)
  GENS=(--device cpu --gens 3 --kimg 0.32); T_TRACE=120; T_HOST=60
  TRACE=(--device cpu --gens 3 --cells 6 --steps 18 --active 3 --c10-batch 2 --sample-images 64)
  T_STUDY=240; T_TP=120; T_CELLS=120; T_GENS=60
  T_STAGES=120; T_ANALYSES=120; T_EAGER=240; T_TESTS=120; T_PROF=240; T_WARM=120; T_TPC=120
  PROF=(--set device=cpu "${STUDY_SET[@]}")
else
  STUDY_SET=(); TP=(--preset cifar10 --device cuda --steps 10 --set classifier.arch=airbench)
  # limits: measured on a fresh H100 (4a961b5, before step w) a 63.5 s, h 34.9, d 51.2, c 52.2,
  # g 87.5, b with compile=false 38.4; b with the preset's compile ran past 80 s
  CELLS=(--device cuda --cells 16 --groups 16 --no-old); T_STUDY=70; T_TP=60; T_CELLS=60
  T_EAGER=90; T_TESTS=60; T_PROF=120; PROF=(--set device=cuda); T_WARM=45; T_TPC=165
  STAGES=(--preset cifar10 --device cuda --steps 20 --repeats 1)
  GENS=(--device cuda --gens 9 --kimg 1.6); T_GENS=55; T_STAGES=180
  TRACE=(--device cuda); T_TRACE=100; T_HOST=30
  ANALYSES=(--device cuda --repeats 1); T_ANALYSES=120
fi
TP+=(${GPU_CHECK_TP_ARGS:-})
STEPS=${GPU_CHECK_STEPS:-targets}
case "$STEPS" in  # named sets; anything else is a list of step letters, e.g. "a d"
  targets) STEPS="w a k" ;;
  diagnose) STEPS="h s t" ;;
  all) STEPS="w a h s t d f c g p b k e" ;;
esac
step() {  # step NAME TIMEOUT_S CMD...: run, time, log; never abort the script
  local name=$1 limit=$2; shift 2
  [[ " $STEPS " == *" ${name%%)*} "* ]] || return 0
  if [ -n "$DRY" ]; then echo "step ${name%%)*} limit_s=$limit"; return 0; fi
  echo "=== $name: $*" >>"$LOG"
  local t0=$(date +%s.%N)
  timeout "$limit" "$@" >>"$LOG" 2>&1
  local rc=$?
  echo "=== $name: rc=$rc wall_s=$(awk -v a="$(date +%s.%N)" -v b="$t0" 'BEGIN{printf "%.1f", a - b}')" >>"$LOG"
}
[ -n "$DRY" ] || { date; nvidia-smi --query-gpu=name,memory.total --format=csv 2>&1 | head -3
  git rev-parse --short HEAD 2>&1; $PY -c "import torch; print('torch', torch.__version__)"; } >"$LOG" 2>&1
unset PYTHONDONTWRITEBYTECODE
# .pyc outside $OUT_DIR on a GPU machine (what comes back from there must stay a few files, even
# if the script is killed); in the CPU smoke test under $OUT_DIR, removed at the end
# (the quick runs' directories likewise)
[ "$DEVICE" = cpu ] || [ -n "$DRY" ] && SCRATCH="$OUT_DIR" || SCRATCH=/tmp/synthequiv-gpu-check
export PYTHONPYCACHEPREFIX=${PYTHONPYCACHEPREFIX:-$SCRATCH/pycache}
RUNS="$SCRATCH/runs"
rm -rf "$RUNS"  # a killed earlier check's runs would be resumed, not timed
step "w) warm caches" "$T_WARM" $PY benchmarks/warm_caches.py
step "a) quick study" "$T_STUDY" $PY -m synthequiv.cli study --preset quick --device "$DEVICE" \
  --name gpu-quick --runs-dir "$RUNS" "${STUDY_SET[@]}"
cp "$RUNS"/gpu-quick/log.txt "$OUT_DIR"/quick_log.txt 2>>"$LOG"
cp "$RUNS"/gpu-quick/summary.json "$OUT_DIR"/quick.json 2>>"$LOG"
step "h) CUDA tests" "$T_TESTS" $PY -m pytest -q -p no:cacheprovider tests/test_stepgraph.py \
  -k cuda -rs -s
step "s) host speed" "$T_HOST" $PY benchmarks/host_speed.py
step "t) group step trace" "$T_TRACE" $PY benchmarks/gpu_trace.py "${TRACE[@]}"
step "d) generators" "$T_GENS" $PY benchmarks/generators.py "${GENS[@]}"
step "f) analyses" "$T_ANALYSES" $PY benchmarks/analyses.py "${ANALYSES[@]}"
step "c) cells" "$T_CELLS" $PY benchmarks/cells.py "${CELLS[@]}"
step "g) quick study, no CUDA graphs" "$T_EAGER" env SYNTHEQUIV_CUDA_GRAPHS=0 \
  $PY -m synthequiv.cli study --preset quick --device "$DEVICE" --name gpu-quick-eager \
  --runs-dir "$RUNS" "${STUDY_SET[@]}"
cp "$RUNS"/gpu-quick-eager/summary.json "$OUT_DIR"/quick_eager.json 2>>"$LOG"
step "p) profile" "$T_PROF" $PY benchmarks/study.py --profile "$OUT_DIR/quick.prof" "${PROF[@]}"
step "b) throughput (preset, eager generator)" "$T_TP" $PY benchmarks/throughput.py "${TP[@]}" \
  --set compile=false
step "k) throughput (preset)" "$T_TPC" $PY benchmarks/throughput.py "${TP[@]}"
step "e) generator step" "$T_STAGES" $PY benchmarks/stages.py "${STAGES[@]}"
rm -rf "$RUNS" "$OUT_DIR/pycache"  # only the copied files come back
if [ -n "$DRY" ]; then rm -rf "$OUT_DIR"; exit 0; fi
grep -E "^=== |ms/step|GFLOP|figures: in|fixed|usable cores| ms \(|imported|dont_write|passed|failed|SKIPPED|stage |wall|img/s|images/s|speed-up|group|graph|sequential|old step|alone|largest|weight \
difference|total|grid|generators|sampling|classifier|Error|error" "$LOG" |
  grep -v "classifier grid [0-9]" | tail -80
echo "full log: $LOG"
