#!/usr/bin/env bash
# Builds (once per machine) and installs mmcv 2.1.0 with its C++ ops into the given venv.
#
# Why a source build: mmcv 2.1.0 ships no wheel for torch 2.14, and torch 2.14's headers
# need C++20 while mmcv's setup.py asks for C++17. The wheel is cached outside the repo
# (CM3D_CACHE, default ~/.cache/conceptminer3d) keyed by mmcv, torch and Python versions and
# by the ops it holds (cpu, or cuda<version>), so a second `make test` on the same machine
# reinstalls it in seconds.
#
# Which ops: with a GPU visible to torch, CUDA ops (CenterPoint's voxelization and every
# other mmcv op on the GPU need them; an mmcv built without them fails there at the first
# batch). That needs nvcc of torch's CUDA version (CUDA_HOME or PATH). Otherwise CPU ops.
# CM3D_MMCV_OPS=cpu|cuda overrides the choice.
set -euo pipefail
venv=$(cd "${1:?usage: build_mmcv.sh VENV_DIR}" && pwd)
py="$venv/bin/python"
mmcv_version=2.1.0
cache=${CM3D_CACHE:-$HOME/.cache/conceptminer3d}
torch_version=$("$py" -c 'import torch; print(torch.__version__.split("+")[0])')
torch_cuda=$("$py" -c 'import torch; print(torch.version.cuda or "")')
py_tag=$("$py" -c 'import sys; print(f"cp{sys.version_info.major}{sys.version_info.minor}")')
ops=${CM3D_MMCV_OPS:-$("$py" -c 'import torch; print("cuda" if torch.cuda.is_available() else "cpu")')}
case "$ops" in
  cpu) ops_tag=cpu ;;
  cuda)
    if [ -z "$torch_cuda" ]; then
      echo "build_mmcv.sh: CUDA ops asked for, but this torch ($torch_version) is a CPU-only build" >&2
      exit 1
    fi
    ops_tag="cuda$torch_cuda" ;;
  *) echo "build_mmcv.sh: CM3D_MMCV_OPS must be cpu or cuda, got '$ops'" >&2; exit 1 ;;
esac
wheel_dir="$cache/wheels/mmcv-$mmcv_version-torch$torch_version-$py_tag-$ops_tag"

# Installed already, with the ops this machine needs?
if "$py" - "$mmcv_version" "$ops" 2>/dev/null <<'PYEOF'
import sys
import mmcv
from mmcv.ops import get_compiling_cuda_version
want_version, want_ops = sys.argv[1:]
has_cuda_ops = get_compiling_cuda_version() not in ('not available', '')
sys.exit(mmcv.__version__ != want_version or (want_ops == 'cuda') != has_cuda_ops)
PYEOF
then
  exit 0
fi

if ! ls "$wheel_dir"/mmcv-*.whl >/dev/null 2>&1; then
  build_env=(MMCV_WITH_OPS=1 "MAX_JOBS=${MAX_JOBS:-$(nproc)}" "PATH=$venv/bin:$PATH")
  if [ "$ops" = cuda ]; then
    nvcc=${CUDA_HOME:+$CUDA_HOME/bin/}nvcc
    if ! command -v "$nvcc" >/dev/null 2>&1; then
      echo "build_mmcv.sh: a GPU is visible, so mmcv needs its CUDA ops, but nvcc was not found" >&2
      echo "  (looked for '$nvcc'). Install the CUDA $torch_cuda toolkit (the version torch was built" >&2
      echo "  with) and set CUDA_HOME, or build CPU-only ops with CM3D_MMCV_OPS=cpu (CenterPoint then" >&2
      echo "  cannot train on the GPU)." >&2
      exit 1
    fi
    arch=${TORCH_CUDA_ARCH_LIST:-$("$py" -c 'import torch; torch.cuda.is_available() and print("%d.%d" % torch.cuda.get_device_capability())')}
    if [ -z "$arch" ]; then
      echo "build_mmcv.sh: no GPU visible to say which architecture to build for: set" >&2
      echo "  TORCH_CUDA_ARCH_LIST (e.g. '8.0;9.0' for A100 and H100)" >&2
      exit 1
    fi
    build_env+=(FORCE_CUDA=1 "TORCH_CUDA_ARCH_LIST=$arch")
    echo ">>> Building mmcv $mmcv_version with CUDA $torch_cuda ops (arch $arch) for torch $torch_version"
  else
    echo ">>> Building mmcv $mmcv_version with CPU ops from source for torch $torch_version"
  fi
  echo ">>> (no prebuilt wheel exists for this torch; ~7 minutes on 2 cores for CPU ops, once per"
  echo ">>>  machine; cached in $wheel_dir)"
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  "$venv/bin/pip" download -q --no-deps --no-binary :all: --no-build-isolation \
      "mmcv==$mmcv_version" -d "$work"
  tar -xzf "$work/mmcv-$mmcv_version.tar.gz" -C "$work"
  src="$work/mmcv-$mmcv_version"
  sed -i 's/-std=c++17/-std=c++20/g' "$src/setup.py"
  mkdir -p "$wheel_dir"
  (cd "$src" && env "${build_env[@]}" "$venv/bin/pip" wheel -q --no-deps --no-build-isolation . -w "$work/dist")
  mv "$work"/dist/mmcv-*.whl "$wheel_dir/"
fi
"$venv/bin/pip" install -q --force-reinstall --no-deps "$wheel_dir"/mmcv-*.whl
