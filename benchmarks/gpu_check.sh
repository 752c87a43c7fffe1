#!/usr/bin/env bash
# vid3d's CUDA path, proved in one command on a machine with an NVIDIA GPU:
#
#     bash benchmarks/gpu_check.sh [VIDEO]
#
# VIDEO defaults to ../shared/data/re10k/videos/0bf152ef84195293_svdxt.mp4, the clip the
# README's CPU figures are for. What it does, each step echoed with the seconds since start:
#
#  1. prints nvidia-smi, the CPU, and the CUDA version the driver supports;
#  2. finds a Python whose torch sees the GPU (python3, or $PYTHON) and adds vid3d's other
#     packages beside it (into $CACHE/site); without one, makes a venv in $CACHE/venv and
#     installs torch from PyPI for the driver (CUDA 13.0: torch 2.13.0; 12.8: 2.10.0;
#     12.4: 2.6.0; $TORCH_SPEC overrides) and `pip install -e .[test]`;
#  3. gsplat: gsplat publishes prebuilt kernels (https://docs.gsplat.studio/whl) only for
#     torch 2.0-2.4 on Python 3.10, which vid3d (Python 3.11+) cannot use: the script tries
#     the index for this torch anyway and says what it found, else uses gsplat 1.5.3 from
#     PyPI, whose wheel carries the CUDA sources and compiles them with nvcc (the same
#     build as its sdist). Without nvcc it installs NVIDIA's nvcc wheels from PyPI for
#     torch's CUDA version and assembles a CUDA_HOME from them in $CACHE;
#  4. compiles gsplat's kernels once (vid3d.splats.rasterize.prepare_cuda_backend), into
#     $CACHE/torch_extensions, so a second run loads them in seconds;
#  5. `vid3d doctor`, which must say "CUDA rasterizer in use";
#  6. python -m pytest -q -m cuda tests/test_cuda.py, then tests/test_render.py;
#  7. a timed default-preset `vid3d reconstruct VIDEO --device cuda` into a temporary
#     workspace (frames, poses, train only when the bundled ffmpeg is not installed), and
#     its figures from report.json next to the README's CPU figures;
#  8. a summary; the exit status is 1 when a step failed.
#
# Environment:
#   VID3D_GPU_CACHE   cache folder (default ~/.cache/vid3d-gpu-check): venv, site, kernels
#   PYTHON            the Python to use (default: python3 if its torch sees a GPU)
#   TORCH_SPEC        the torch to install into a new venv (default: chosen by the driver)
#   VID3D_WHEELS      a folder of wheels to install from instead of PyPI (an offline
#                     machine: gsplat-1.5.3-py3-none-any.whl, pycolmap, av, plyfile, ...)
#   VID3D_GPU_WORKSPACE  a workspace whose frames and poses stages already ran (made on
#                     another machine): trained with --device cuda when VIDEO cannot run
#   VID3D_PYPI_INDEX  the package index (default https://pypi.org/simple; the script's pip
#                     ignores local pip configuration, so a local CPU torch is not taken)
#   VID3D_CUDA_FROM_PIP=1  use NVIDIA's nvcc wheels even when an nvcc is installed
#   VID3D_GPU_CHECK_BUILD_ONLY=1  steps 2-4 only, compiling for $TORCH_CUDA_ARCH_LIST
#                     (default 9.0) without a GPU: checks the install path on any machine
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
CACHE=${VID3D_GPU_CACHE:-$HOME/.cache/vid3d-gpu-check}
mkdir -p "$CACHE"
CACHE=$(cd "$CACHE" && pwd)
VIDEO=${1:-$REPO/../shared/data/re10k/videos/0bf152ef84195293_svdxt.mp4}
WHEELS=${VID3D_WHEELS:-}
[ -n "$WHEELS" ] && WHEELS=$(cd "$WHEELS" && pwd)
INDEX=${VID3D_PYPI_INDEX:-https://pypi.org/simple}
BUILD_ONLY=${VID3D_GPU_CHECK_BUILD_ONLY:-0}
START=$(date +%s)
SUMMARY=()
FAILURES=0
export PYTHONUNBUFFERED=1 COLUMNS=${COLUMNS:-160}
export TORCH_EXTENSIONS_DIR=$CACHE/torch_extensions
export MAX_JOBS=${MAX_JOBS:-$(nproc)}

step() { echo; echo "=== [$(($(date +%s) - START)) s] $*"; }
note() { echo "    $*"; }
ok() { SUMMARY+=("ok    $*"); }
failed() { SUMMARY+=("FAIL  $*"); FAILURES=$((FAILURES + 1)); }
skipped() { SUMMARY+=("skip  $*"); }
die() { echo "gpu_check: $*" >&2; exit 1; }
ver_ge() { [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" = "$2" ]; }
# pip on the package index only: a machine's own pip configuration (find-links to a local
# CPU build of torch, constraints) must not decide which torch a GPU check gets
pipx() { PIP_CONFIG_FILE=/dev/null "$PYBIN" -m pip --isolated --disable-pip-version-check --retries 1 --timeout 60 "$@"; }
has() { "$PYBIN" -c "import $1" >/dev/null 2>&1; }
elapsed() { echo $(($(date +%s) - $1)); }

SUMMARIZED=0
summary() {
  SUMMARIZED=1
  step "summary ($(($(date +%s) - START)) s in all)"
  for line in "${SUMMARY[@]}"; do echo "  $line"; done
  [ "$FAILURES" -eq 0 ] && echo "gpu_check: all steps passed" || echo "gpu_check: $FAILURES step(s) failed"
}
# an early exit (a failed step, set -e) still prints what ran
trap 'rc=$?; [ "$SUMMARIZED" = 0 ] && [ ${#SUMMARY[@]} -gt 0 ] && summary; exit $rc' EXIT

# ------------------------------------------------------------------------------------------
step "1/8 the machine"
DRIVER_CUDA=""
if [ "$BUILD_ONLY" = 1 ]; then
  note "build only: no GPU needed (kernels for TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:=9.0})"
  export TORCH_CUDA_ARCH_LIST
  DRIVER_CUDA=${VID3D_DRIVER_CUDA:-13.0}
else
  command -v nvidia-smi >/dev/null || die "nvidia-smi not found: is the NVIDIA driver installed?"
  nvidia-smi || die "nvidia-smi failed: the driver does not see a GPU"
  DRIVER_CUDA=$(nvidia-smi | sed -n 's/.*CUDA Version: *\([0-9][0-9.]*\).*/\1/p' | head -n1)
fi
note "driver supports CUDA ${DRIVER_CUDA:-?}"
note "CPU: $(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -n1), $(nproc) cores"
ok "machine: CUDA ${DRIVER_CUDA:-?} driver, $(nproc) cores"

# ------------------------------------------------------------------------------------------
step "2/8 Python, torch and vid3d's packages"
PYBIN=${PYTHON:-python3}
command -v "$PYBIN" >/dev/null || die "no $PYBIN: install Python 3.11+ or set PYTHON"
"$PYBIN" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || die "$("$PYBIN" -V) is too old: vid3d needs Python 3.11+ (set PYTHON)"
ONLINE=0
if [ -z "$WHEELS" ] && "$PYBIN" -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1] + '/pip/', timeout=15)" "$INDEX" >/dev/null 2>&1; then
  ONLINE=1
fi
note "package index $INDEX: $([ "$ONLINE" = 1 ] && echo reachable || echo "not used (${WHEELS:+wheels from $WHEELS}${WHEELS:-unreachable})")"
# install from $WHEELS, or from the index when it answers; nothing to install from: fail
pip_get() {
  if [ -n "$WHEELS" ]; then pipx install -q --no-index --find-links "$WHEELS" "$@"
  elif [ "$ONLINE" = 1 ]; then pipx install -q --index-url "$INDEX" "$@"
  else echo "    cannot install $*: no VID3D_WHEELS and no package index" >&2; return 1; fi
}
SITE=""
gpu_torch() { "$PYBIN" -c "import torch, sys; sys.exit(not torch.version.cuda or not ($BUILD_ONLY or torch.cuda.is_available()))" 2>/dev/null; }
if gpu_torch; then
  MODE=system
  SITE=$CACHE/site
  mkdir -p "$SITE"
  export PYTHONPATH=$REPO:$SITE${PYTHONPATH:+:$PYTHONPATH} PATH=$SITE/bin:$PATH
  note "using $("$PYBIN" -c 'import sys; print(sys.executable)') and its torch; other packages go to $SITE"
else
  MODE=venv
  if [ ! -x "$CACHE/venv/bin/python" ]; then
    "$PYBIN" -m venv "$CACHE/venv" || die "cannot make a venv (Debian: apt-get install python3-venv)"
  fi
  PYBIN=$CACHE/venv/bin/python
  export PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH}
  if ! gpu_torch; then
    if [ -n "${TORCH_SPEC:-}" ]; then spec=$TORCH_SPEC
    elif ver_ge "${DRIVER_CUDA:-0}" 13.0; then spec="torch==2.13.0"  # PyPI's Linux build: CUDA 13.0
    elif ver_ge "${DRIVER_CUDA:-0}" 12.8; then spec="torch==2.10.0"  # CUDA 12.8
    elif ver_ge "${DRIVER_CUDA:-0}" 12.4; then spec="torch==2.6.0"   # CUDA 12.4
    else die "the driver supports CUDA ${DRIVER_CUDA:-?}: update it (PyPI's torch builds need 12.4+) or set TORCH_SPEC"
    fi
    note "installing $spec (a CUDA build, several GB) into $CACHE/venv"
    t=$(date +%s)
    pip_get "$spec" || die "cannot install $spec"
    note "torch installed in $(elapsed "$t") s"
  fi
  gpu_torch || die "the installed torch is not a CUDA build, or does not see the GPU"
fi
"$PYBIN" -c "import torch; print('    torch', torch.__version__, '| CUDA', torch.version.cuda, '| GPU', torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none', torch.cuda.get_device_capability(0) if torch.cuda.is_available() else '')"
TORCH_CUDA=$("$PYBIN" -c "import torch; print(torch.version.cuda)")
TAG=$("$PYBIN" -c "import torch; v = torch.__version__.split('+')[0].split('.'); print('pt' + v[0] + v[1] + 'cu' + torch.version.cuda.replace('.', ''))")

# gsplat: its prebuilt wheel for this torch if its index has one, else PyPI's (compiled below)
t=$(date +%s)
if ! has gsplat; then
  if [ "$ONLINE" = 1 ] && [ "$MODE" = venv ]; then
    note "gsplat: trying $TAG on https://docs.gsplat.studio/whl (prebuilt kernels)"
    if timeout 120 env PIP_CONFIG_FILE=/dev/null "$PYBIN" -m pip --isolated install -q --no-deps \
        --index-url "https://docs.gsplat.studio/whl/$TAG" "gsplat==1.5.3" 2>"$CACHE/gsplat_index.log"; then
      note "gsplat: prebuilt wheel $TAG installed"
    else
      note "gsplat: no prebuilt wheel for $TAG / Python $("$PYBIN" -c 'import sys; print(*sys.version_info[:2], sep=".")') ($(tail -n1 "$CACHE/gsplat_index.log" | cut -c1-120)); using PyPI's gsplat, compiled below"
    fi
  fi
fi
if [ "$MODE" = venv ]; then
  pip_get -e ".[test]" "gsplat==1.5.3" ninja || pip_get -e . "gsplat==1.5.3" \
    || note "pip install -e . failed: running vid3d from the source tree (PYTHONPATH)"
else
  # beside a system torch: only what is missing, without dependencies (never a second torch)
  need=()
  for pair in gsplat:gsplat==1.5.3 jaxtyping:jaxtyping pycolmap:pycolmap av:av plyfile:plyfile \
      imageio_ffmpeg:imageio-ffmpeg numba:numba scipy:scipy cv2:opencv-python-headless \
      typer:typer rich:rich pytest:pytest ninja:ninja; do
    has "${pair%%:*}" || need+=("${pair#*:}")
  done
  for pkg in ${need[@]+"${need[@]}"}; do
    pip_get --no-deps --target "$SITE" "$pkg" 2>/dev/null || note "not installed: $pkg"
  done
fi
missing=()
for mod in gsplat pycolmap av plyfile imageio_ffmpeg numba scipy cv2 typer rich pytest; do
  has "$mod" || missing+=("$mod")
done
note "installed in $(elapsed "$t") s; gsplat $("$PYBIN" -c 'import gsplat; print(gsplat.__version__)' 2>/dev/null || echo MISSING)"
[ ${#missing[@]} -gt 0 ] && note "still missing: ${missing[*]} (the steps that need them fail or are skipped)"
has gsplat || { failed "packages: gsplat missing"; exit 1; }
ok "python: $("$PYBIN" -V 2>&1), torch $("$PYBIN" -c 'import torch; print(torch.__version__)') ($MODE)${missing[0]+, missing: ${missing[*]}}"

# ------------------------------------------------------------------------------------------
step "3/8 a CUDA $TORCH_CUDA toolkit to compile gsplat's kernels"
NVCC=$("$PYBIN" -c "from vid3d.splats.rasterize import _nvcc; print(_nvcc() or '')")
PREBUILT=$("$PYBIN" -c "import importlib.util as u; print(int(u.find_spec('gsplat.csrc') is not None))")
if [ "$PREBUILT" = 1 ]; then
  note "gsplat ships prebuilt kernels: no toolkit needed"
elif [ -n "$NVCC" ] && [ "${VID3D_CUDA_FROM_PIP:-0}" != 1 ]; then
  note "nvcc: $NVCC ($("$NVCC" --version | tail -n1))"
else
  CU_MM=$TORCH_CUDA
  CU_MAJOR=${TORCH_CUDA%%.*}
  note "no nvcc: installing NVIDIA's nvcc wheels for CUDA $CU_MM from the package index"
  # the packages of cuda-toolkit[nvcc,crt,nvvm,cccl,cudart] (CUDA 13 dropped the -cuNN suffix)
  if [ "$CU_MAJOR" -ge 13 ]; then sfx=""; parts=(cuda-nvcc cuda-crt nvvm cuda-cccl cuda-runtime)
  else sfx="-cu$CU_MAJOR"; parts=(cuda-nvcc cuda-cccl cuda-runtime); fi
  toolkit=()
  for part in "${parts[@]}"; do toolkit+=("nvidia-$part$sfx==$CU_MM.*"); done
  target=()
  [ "$MODE" = system ] && target=(--target "$SITE" --no-deps)
  pip_get ${target[@]+"${target[@]}"} "${toolkit[@]}" || die "no nvcc, and NVIDIA's nvcc wheels cannot be installed"
  # one CUDA_HOME from the nvidia/* wheel folders: bin and nvvm copied (nvcc finds its
  # compiler relative to itself), headers and libraries linked, the layout nvcc.profile reads
  home=$CACHE/cuda-home-$CU_MM
  rm -rf "$home"
  mkdir -p "$home/bin" "$home/include" "$home/lib64" "$home/nvvm" "$home/targets"
  while IFS= read -r d; do
    for sub in "$d"/*/; do
      [ -d "$sub/include" ] && cp -rsf "$sub/include/." "$home/include/"
      [ -d "$sub/lib" ] && cp -rsf "$sub/lib/." "$home/lib64/"
      [ -d "$sub/bin" ] && cp -rf "$sub/bin/." "$home/bin/"
      [ -d "$sub/nvvm" ] && cp -rf "$sub/nvvm/." "$home/nvvm/"
    done
  done < <("$PYBIN" -c "import nvidia; print('\n'.join(sorted(set(nvidia.__path__))))")
  for f in "$home"/lib64/libcudart.so.*; do
    [ -e "$f" ] && [ ! -e "$home/lib64/libcudart.so" ] && ln -s "$(basename "$f")" "$home/lib64/libcudart.so"
  done
  ln -sfn lib64 "$home/lib"
  ln -sfn .. "$home/targets/x86_64-linux"
  [ -x "$home/bin/nvcc" ] || die "the nvcc wheels did not provide bin/nvcc"
  export CUDA_HOME=$home PATH=$home/bin:$PATH
  NVCC=$home/bin/nvcc
  note "CUDA_HOME=$home ($("$NVCC" --version | tail -n1))"
fi
if [ "$PREBUILT" != 1 ] && ! command -v "${CXX:-c++}" >/dev/null; then
  note "no C++ compiler: trying apt-get install g++"
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && apt-get install -y -qq g++ >/dev/null) || die "cannot install g++"
  else die "install a C++ compiler (g++) for nvcc"; fi
fi
has ninja || command -v ninja >/dev/null || pip_get ${SITE:+--target "$SITE"} ninja || true
ok "toolkit: ${NVCC:-prebuilt kernels}"

# ------------------------------------------------------------------------------------------
step "4/8 gsplat's CUDA kernels (compiled once into $TORCH_EXTENSIONS_DIR; MAX_JOBS=$MAX_JOBS)"
t=$(date +%s)
if [ "$BUILD_ONLY" = 1 ]; then
  if "$PYBIN" -c "import sys, gsplat.cuda._backend as b; sys.exit(b._C is None)"; then
    ok "kernels: compiled or loaded in $(elapsed "$t") s (build only)"
  else failed "kernels: compile failed"; fi
  summary
  [ "$FAILURES" -eq 0 ]; exit
fi
if "$PYBIN" - <<'EOF'
import sys
from vid3d.splats.rasterize import prepare_cuda_backend
st = prepare_cuda_backend(log=lambda m: print("    " + m, flush=True))
print(f"    {st['state']}: {st['detail']}")
if st["state"] != "loaded":
    print(f"    fix: {st['hint']}")
sys.exit(st["state"] != "loaded")
EOF
then ok "kernels: loaded in $(elapsed "$t") s"
else failed "kernels: not loaded (see above)"; exit 1; fi

# ------------------------------------------------------------------------------------------
step "5/8 vid3d doctor"
"$PYBIN" -m vid3d doctor 2>&1 | tee "$CACHE/doctor.txt" || true
if grep -q "CUDA rasterizer in use" "$CACHE/doctor.txt"; then ok "doctor: CUDA rasterizer in use"
else failed "doctor: does not say 'CUDA rasterizer in use'"; fi

# ------------------------------------------------------------------------------------------
step "6/8 tests: -m cuda tests/test_cuda.py, then tests/test_render.py"
t=$(date +%s)
if "$PYBIN" -m pytest -q -raP -m cuda tests/test_cuda.py; then ok "tests/test_cuda.py ($(elapsed "$t") s)"
else failed "tests/test_cuda.py"; fi
t=$(date +%s)
if "$PYBIN" -m pytest -q -ra tests/test_render.py; then ok "tests/test_render.py ($(elapsed "$t") s)"
else failed "tests/test_render.py${missing[0]+ (missing: ${missing[*]})}"; fi

# ------------------------------------------------------------------------------------------
step "7/8 timed default-preset reconstruction on CUDA"
RUN=$(mktemp -d "$CACHE/run.XXXXXX")
WS=$RUN/ws
t=$(date +%s)
ran=""
if [ -f "$VIDEO" ] && has av && has pycolmap; then
  if has imageio_ffmpeg; then
    note "vid3d reconstruct $VIDEO --device cuda"
    "$PYBIN" -m vid3d reconstruct "$VIDEO" --out "$WS" --device cuda && ran=reconstruct
  else
    note "no bundled ffmpeg (imageio-ffmpeg): frames, poses and train only (the README's CPU figure has no render either)"
    "$PYBIN" -m vid3d frames "$VIDEO" --out "$WS" \
      && "$PYBIN" -m vid3d poses "$WS" --device cuda \
      && "$PYBIN" -m vid3d train "$WS" --device cuda && ran="frames+poses+train"
  fi
elif [ -n "${VID3D_GPU_WORKSPACE:-}" ] && [ -d "$VID3D_GPU_WORKSPACE/sparse/0" ]; then
  note "training the prepared workspace $VID3D_GPU_WORKSPACE (frames and poses ran elsewhere)"
  cp -r "$VID3D_GPU_WORKSPACE" "$WS"
  "$PYBIN" -m vid3d train "$WS" --device cuda --force && ran="train (prepared workspace)"
else
  note "cannot run: no video at $VIDEO (or no av/pycolmap), and no VID3D_GPU_WORKSPACE"
fi
WALL=$(elapsed "$t")
if [ -n "$ran" ] && [ -f "$WS/report.json" ]; then
  "$PYBIN" - "$WS/report.json" "$WALL" "$ran" <<'EOF'
import json, sys
report, wall, ran = json.load(open(sys.argv[1])), float(sys.argv[2]), sys.argv[3]
stages = report["stages"]
print(f"    {ran}: {wall:.0f} s wall" + (" (frames and poses: the other machine's seconds)"
                                      if "prepared" in ran else ""))
for name, s in stages.items():
    print(f"      {name:8s} {s['seconds']:7.1f} s")
m = stages.get("splat", {}).get("metrics", {})
cpu_part = sum(stages[s]["seconds"] for s in ("frames", "poses", "splat") if s in stages)
sps = m.get("steps_per_second")
print(f"    frames+poses+train {cpu_part / 60:.1f} min; training {m.get('train_seconds', 0):.1f} s, "
      f"{m.get('steps')} steps, {sps:.1f} steps/s" if sps else "    no training figures")
def num(v, fmt):
    return "?" if v is None else format(v, fmt)


print(f"    held-out PSNR {num(m.get('psnr'), '.2f')} dB (uncorrected {num(m.get('psnr_raw'), '.2f')}), "
      f"SSIM {num(m.get('ssim'), '.3f')}, {m.get('gaussians')} Gaussians; "
      f"device {m.get('device')}, rasterizer {m.get('backend')}")
print("    README, CPU (2 cores): 28.62 dB held-out PSNR, 6.5 min for frames+poses+train "
      "(default preset, 0bf152ef84195293_svdxt, 5.2-6.6 steps/s)")
EOF
  ok "reconstruction: $ran in $WALL s"
elif [ -n "$ran" ]; then failed "reconstruction: no report.json"
elif [ -f "$VIDEO" ] || [ -n "${VID3D_GPU_WORKSPACE:-}" ]; then failed "reconstruction (see above)"
else skipped "reconstruction: no input (see above)"; FAILURES=$((FAILURES + 1)); fi

# ------------------------------------------------------------------------------------------
summary
[ "$FAILURES" -eq 0 ]
