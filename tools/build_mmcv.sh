#!/usr/bin/env bash
# Builds (once per machine) and installs mmcv 2.1.0 with its C++ ops into the given venv.
#
# Why a source build: mmcv 2.1.0 ships no wheel for torch 2.14, and torch 2.14's headers
# need C++20 while mmcv's setup.py asks for C++17. The wheel is cached outside the repo
# (CM3D_CACHE, default ~/.cache/conceptminer3d) keyed by mmcv, torch and Python versions,
# so a second `make test` on the same machine reinstalls it in seconds.
set -euo pipefail
venv=$(cd "${1:?usage: build_mmcv.sh VENV_DIR}" && pwd)
py="$venv/bin/python"
mmcv_version=2.1.0
cache=${CM3D_CACHE:-$HOME/.cache/conceptminer3d}
torch_version=$("$py" -c 'import torch; print(torch.__version__.split("+")[0])')
py_tag=$("$py" -c 'import sys; print(f"cp{sys.version_info.major}{sys.version_info.minor}")')
wheel_dir="$cache/wheels/mmcv-$mmcv_version-torch$torch_version-$py_tag"

if "$py" -c "import mmcv, mmcv.ops, sys; sys.exit(mmcv.__version__ != '$mmcv_version')" 2>/dev/null; then
  exit 0
fi

if ! ls "$wheel_dir"/mmcv-*.whl >/dev/null 2>&1; then
  echo ">>> Building mmcv $mmcv_version with C++ ops from source for torch $torch_version"
  echo ">>> (no prebuilt wheel exists for this torch; takes ~7 minutes on 2 cores, once per machine;"
  echo ">>>  cached in $wheel_dir)"
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  "$venv/bin/pip" download -q --no-deps --no-binary :all: --no-build-isolation \
      "mmcv==$mmcv_version" -d "$work"
  tar -xzf "$work/mmcv-$mmcv_version.tar.gz" -C "$work"
  src="$work/mmcv-$mmcv_version"
  sed -i 's/-std=c++17/-std=c++20/g' "$src/setup.py"
  mkdir -p "$wheel_dir"
  (cd "$src" && MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-$(nproc)} PATH="$venv/bin:$PATH" \
      "$venv/bin/pip" wheel -q --no-deps --no-build-isolation . -w "$work/dist")
  mv "$work"/dist/mmcv-*.whl "$wheel_dir/"
fi
"$venv/bin/pip" install -q --no-deps "$wheel_dir"/mmcv-*.whl
