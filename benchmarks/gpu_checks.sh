#!/usr/bin/env bash
# Every GPU measurement and check (issues 11, 23) in one command, for a lent H100/H200 (about 10 min):
#
#     DRKIT_COMMIT=$(git rev-parse --short HEAD) OUT=/some/dir bash benchmarks/gpu_checks.sh
#
# Writes into $OUT: reinforce_throughput_gpu.txt (2x resnet50 @224 px and resnet18 @32 px at reinforce's
# default batch size: ratio to teacher-only forward, TFLOP/s, MFU), replay_loader_gpu.txt (DR training / ERM
# with the CPU loader as the bottleneck), cuda_tests.txt (the CUDA tests), cuda_paths.txt (AMP, channels_last,
# store and replay across devices) and render_speed_gpu.txt (views/s and kernels a batch, 256 and 4096 views). Each step has
# its own time limit so that one slow step cannot cost the others; a failing step is reported and the next one still
# runs. The limits add up to 540 s, so the whole fits one device command (at most 600 s). reinforce_throughput runs one
# repeat a teacher to fit: its GPU ratios are single runs, and say so in their header.
set -u
OUT=${OUT:?set OUT to the folder for the results}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
py=${PYTHON:-python3}
step() {  # step SECONDS NAME COMMAND...
  local limit=$1 name=$2; shift 2
  local t0=$SECONDS
  timeout "$limit" "$@"; local rc=$?
  echo "== $name: exit $rc after $((SECONDS - t0)) s"
}
nvidia-smi -L; $py -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"
step 210 reinforce_throughput $py benchmarks/reinforce_throughput.py --device cuda --views 16384 --repeats 1 \
  --workers 8 --data imagefolder:/tmp/jpegs --make-jpegs 4096 --small-data imagefolder:/tmp/j32 --make-small-jpegs 32768 \
  --out-file "$OUT/reinforce_throughput_gpu.txt"
step 75 cuda_tests bash -c "$py -m pytest -q -p no:cacheprovider -k cuda -s tests/test_renderer.py tests/test_teachers.py \
  tests/test_train.py >'$OUT/cuda_tests.txt' 2>&1; tail -4 '$OUT/cuda_tests.txt'"
step 120 replay_loader $py benchmarks/replay_loader.py --device cuda --workers 4 --batch-size 256 \
  --data imagefolder:/tmp/j64 --make-jpegs 8192 --out-file "$OUT/replay_loader_gpu.txt"
step 40 cuda_paths $py benchmarks/cuda_paths.py --device cuda --out-file "$OUT/cuda_paths.txt"
step 50 render_speed bash -c "$py benchmarks/render_speed.py --device cuda > '$OUT/render_speed_gpu.txt'"
step 45 diagnostics bash -c "$py benchmarks/diag/gpu_diag.py > '$OUT/gpu_diag.txt' 2>&1"
