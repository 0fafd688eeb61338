#!/usr/bin/env bash
# The GPU half of benchmarks/: what a machine with a CUDA GPU adds to RESULTS.md, in one run
# bounded by a deadline (default 570 s), each part writing as it goes:
#   1. the fast-path equality tests with their CUDA cases (Triton compiled, not interpreted);
#   2. CUBA on the GPU: 1, 100 and 1000 batched trials (target (d), GPU half);
#   3. the spiking-layer contenders on CUDA, the targets' size first (targets (a) and (b)).
# Contenders missing from the machine can come as wheels in .whl/ (installed to a private path).
# The files written to OUT (gpu_equality.txt, cuba_gpu.*, snn_layers_gpu.*) belong in
# benchmarks/results/, where `python benchmarks/run_all.py --report-only` puts them into RESULTS.md.
#   usage: OUT=<folder> bash benchmarks/gpu_check.sh [deadline seconds]
set -u
cd "$(dirname "$0")/.."
OUT=$(realpath -m "${OUT:-benchmarks/results/gpu}")
mkdir -p "$OUT"
deadline=$((SECONDS + ${1:-570}))
left() { echo $((deadline - SECONDS)); }
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        .whl/*.whl && export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
{
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
    python3 -c "import torch, triton, numpy; print('torch', torch.__version__, 'triton', triton.__version__,
'numpy', numpy.__version__, torch.cuda.get_device_name())"
    timeout "$(( $(left) - 390 ))" python3 -m pytest -v --tb=short -p no:cacheprovider \
        tests/test_fused.py tests/test_fused_triton.py tests/test_cuba_triton.py
    echo "pytest exit: $?"
} > "$OUT/gpu_equality.txt" 2>&1
(cd benchmarks && timeout "$(( $(left) - 270 ))" python3 cuba.py --gpu) > "$OUT/cuba.log" 2>&1
cp benchmarks/results/cuba_gpu.json benchmarks/results/cuba_gpu.md "$OUT/" 2>/dev/null
(cd benchmarks && timeout "$(left)" python3 snn_layers.py --device cuda --out "$OUT" --name snn_layers_gpu) > "$OUT/snn.log" 2>&1
echo "done with $(left) s to spare" >> "$OUT/snn.log"
