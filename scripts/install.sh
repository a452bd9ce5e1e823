#!/usr/bin/env bash
# Install crossi2p_ros for development: the one install script.
#
#   scripts/install.sh          (from anywhere; works on the repo it lives in)
#
# What it does, in order, printing each step:
#   1. system libraries (Debian/Ubuntu): the runtime libraries open3d, OpenCV
#      and torch load, and the compilers/CMake that build tf2_msgs. As root it
#      apt-get installs what is missing; otherwise it prints the command.
#   2. .venv at the repo root, with CPython 3.11 (the ROS 2 wheels are cp311).
#   3. pinned Python packages: requirements.txt, constrained by constraints.txt.
#   4. tf2_msgs (interfaces/tf2_msgs), built with the wheels' rosidl generators
#      and installed into the venv prefix, since no tf2_msgs wheel exists.
#   5. this project, editable (`pip install --no-build-isolation --no-deps -e .`).
#
# Idempotent: .venv/.crossi2p-install-stamp records a hash of each step's
# inputs; a step whose inputs did not change is skipped, so a second run takes
# seconds and changes nothing. Delete the stamp file to force every step.
# Non-interactive (CI=true, no stdin, no tty are fine).
#
# Environment: PYTHON=/path/to/python3.11 picks the interpreter for a new venv.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"
STAMP="$VENV/.crossi2p-install-stamp"

# A sourced ROS 2 setup (/opt/ros/*/setup.bash) puts the system's Python
# packages on PYTHONPATH; pip would then count them as installed in the venv.
unset PYTHONPATH PYTHONHOME
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
export DEBIAN_FRONTEND=noninteractive

step() { printf '==> %s\n' "$*"; }
info() { printf '    %s\n' "$*"; }
die() {
  printf 'install.sh: error: %s\n' "$1" >&2
  shift
  for line in "$@"; do printf '    %s\n' "$line" >&2; done
  exit 1
}

# sha256 of the named files and directories (paths and contents), plus this
# script, so that a fixed install step re-runs everywhere.
inputs_hash() {
  { printf '%s\n' "$@"; find "$@" "$ROOT/scripts/install.sh" -type f -not -path '*/__pycache__/*' -print0 \
      | LC_ALL=C sort -z | xargs -0 sha256sum; } | sha256sum | cut -d' ' -f1
}
stamp_get() { [[ -f "$STAMP" ]] && sed -n "s/^$1 //p" "$STAMP" || true; }
stamp_set() {
  local tmp="$STAMP.tmp"
  { [[ -f "$STAMP" ]] && grep -v "^$1 " "$STAMP" || true; printf '%s %s\n' "$1" "$2"; } > "$tmp"
  mv "$tmp" "$STAMP"
}

# ---------------------------------------------------------------------------
step "1/5 system packages"
# libusb-1.0-0: `import open3d` fails without it; libgl1/libegl1: open3d and
# OpenCV link them; libgomp1: torch/open3d OpenMP. cmake/g++/make build tf2_msgs.
SYSTEM_PACKAGES=(libusb-1.0-0 libgl1 libegl1 libgomp1 cmake g++ make)
if command -v dpkg-query > /dev/null 2>&1; then
  missing=()
  for pkg in "${SYSTEM_PACKAGES[@]}"; do
    if [[ "$(dpkg-query -W -f='${Status}' "$pkg" 2> /dev/null || true)" != "install ok installed" ]]; then
      missing+=("$pkg")
    fi
  done
  if ((${#missing[@]} == 0)); then
    info "present: ${SYSTEM_PACKAGES[*]}"
  elif [[ "$(id -u)" == 0 ]] && command -v apt-get > /dev/null 2>&1; then
    info "installing: ${missing[*]}"
    # A fresh machine may have no package lists yet: update only if needed.
    if ! apt-get install -y -q --no-install-recommends "${missing[@]}"; then
      apt-get update -q
      apt-get install -y -q --no-install-recommends "${missing[@]}"
    fi
  else
    info "MISSING system packages: ${missing[*]}"
    info "run:  sudo apt-get install -y --no-install-recommends ${missing[*]}"
    info "(continuing; open3d or the tf2_msgs build will fail until they are installed)"
  fi
else
  info "not a Debian-based system: make sure libusb-1.0, libGL/libEGL, libgomp, cmake and a C++ compiler are installed"
fi

# ---------------------------------------------------------------------------
step "2/5 virtual environment (.venv, CPython 3.11)"
is_cpython311() {
  "$1" -c 'import platform, sys; sys.exit(not (platform.python_implementation() == "CPython" and sys.version_info[:2] == (3, 11)))' \
    > /dev/null 2>&1
}
if [[ -x "$PY" ]]; then
  is_cpython311 "$PY" || die "$VENV exists but is not a working CPython 3.11 venv." \
    "The ROS 2 wheels are built for CPython 3.11 (cp311). Remove it (rm -rf .venv) and run this script again."
  info "exists: $("$PY" -c 'import sys; print(sys.version.split()[0])') at .venv"
else
  base=""
  for cand in ${PYTHON:+"$PYTHON"} python3.11 python3 /usr/bin/python3.11 /usr/local/bin/python3.11; do
    command -v "$cand" > /dev/null 2>&1 || continue
    is_cpython311 "$cand" || continue
    # venv needs ensurepip, and tf2_msgs needs the C headers: skip interpreters without them.
    if "$cand" -c 'import ensurepip, os, sys, sysconfig, venv; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
      > /dev/null 2>&1; then
      base="$(command -v "$cand")"
      break
    fi
    info "skipping $cand: CPython 3.11 but no venv/ensurepip module or no Python.h (Debian: apt-get install python3.11-venv python3.11-dev)"
  done
  [[ -n "$base" ]] || die "no usable CPython 3.11 found (tried \$PYTHON, python3.11, python3)." \
    "The ROS 2 wheels this project uses are cp311 only. Install CPython 3.11 with its headers" \
    "(Debian 12: apt-get install python3.11 python3.11-venv python3.11-dev; or pyenv install 3.11)," \
    "or point PYTHON=/path/to/python3.11 at one, then run this script again."
  info "creating .venv with $base ($("$base" -c 'import sys; print(sys.version.split()[0])'))"
  "$base" -m venv "$VENV"
fi

# Serialise concurrent runs on the same venv (two terminals, an editor hook).
if command -v flock > /dev/null 2>&1; then
  exec 9> "$VENV/.crossi2p-install.lock"
  flock 9
fi

# ---------------------------------------------------------------------------
step "3/5 Python packages (requirements.txt, pinned by constraints.txt)"
pip_hash="$(inputs_hash requirements.txt constraints.txt "$VENV/pyvenv.cfg")"
if [[ "$(stamp_get pip)" == "$pip_hash" ]]; then
  info "up to date (inputs unchanged)"
else
  # pip itself is pinned in constraints.txt; older pips resolve differently.
  "$PY" -m pip install -q --upgrade -c constraints.txt pip
  "$PY" -m pip install -r requirements.txt -c constraints.txt
  stamp_set pip "$pip_hash"
fi

# ---------------------------------------------------------------------------
step "4/5 tf2_msgs interface package -> .venv (interfaces/tf2_msgs)"
tf2_hash="$(inputs_hash interfaces "$VENV/pyvenv.cfg" requirements.txt constraints.txt)"
if [[ "$(stamp_get tf2_msgs)" == "$tf2_hash" && -f "$VENV/share/tf2_msgs/package.xml" ]]; then
  info "up to date (inputs unchanged)"
else
  for tool in cmake c++ make; do
    command -v "$tool" > /dev/null 2>&1 || die "'$tool' not found: it is needed to build interfaces/tf2_msgs." \
      "Debian: apt-get install -y cmake g++ make"
  done
  build_dir="$(mktemp -d "${TMPDIR:-/tmp}/crossi2p-tf2_msgs.XXXXXX")"
  trap 'rm -rf "$build_dir"' EXIT
  # The wheels install their CMake packages and ament index under the venv
  # root, so the venv is both the prefix to search and the one to install
  # into. Run with a clean ROS environment: a sourced /opt/ros setup would
  # otherwise mix system packages into this build.
  build_env=(env -u LD_LIBRARY_PATH -u COLCON_PREFIX_PATH
    "PATH=$VENV/bin:$PATH" "AMENT_PREFIX_PATH=$VENV" "CMAKE_PREFIX_PATH=$VENV")
  info "configure"
  "${build_env[@]}" cmake -S interfaces/tf2_msgs -B "$build_dir" \
    -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_INSTALL_PREFIX="$VENV" \
    -DCMAKE_PREFIX_PATH="$VENV" \
    -DPython3_EXECUTABLE="$PY" \
    -DPython3_FIND_VIRTUALENV=ONLY \
    -DBUILD_TESTING=OFF \
    > "$build_dir/configure.log" 2>&1 || { cat "$build_dir/configure.log" >&2; die "configuring tf2_msgs failed (log above)"; }
  info "build"
  "${build_env[@]}" cmake --build "$build_dir" --parallel "$(nproc 2> /dev/null || echo 2)" \
    > "$build_dir/build.log" 2>&1 || { cat "$build_dir/build.log" >&2; die "building tf2_msgs failed (log above)"; }
  info "install into .venv"
  "${build_env[@]}" cmake --install "$build_dir" > "$build_dir/install.log" 2>&1 \
    || { cat "$build_dir/install.log" >&2; die "installing tf2_msgs failed (log above)"; }
  rm -rf "$build_dir"
  trap - EXIT
  # Prove the result imports with no environment set (as users run it).
  env -u AMENT_PREFIX_PATH -u LD_LIBRARY_PATH "$PY" -c \
    'from tf2_msgs.msg import TFMessage; TFMessage(); print("    import tf2_msgs.msg: ok")'
  stamp_set tf2_msgs "$tf2_hash"
fi

# ---------------------------------------------------------------------------
step "5/5 crossi2p_ros (editable)"
proj_hash="$(inputs_hash setup.py setup.cfg package.xml resource "$VENV/pyvenv.cfg")"
site="$VENV/lib/python3.11/site-packages"
if [[ "$(stamp_get project)" == "$proj_hash" ]] && compgen -G "$site/crossi2p_ros-*.dist-info" > /dev/null; then
  info "up to date (inputs unchanged)"
else
  "$PY" -m pip install -q --no-build-isolation --no-deps -e .
  stamp_set project "$proj_hash"
fi

step "done: use .venv/bin/python (or: source .venv/bin/activate)"
