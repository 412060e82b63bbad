#!/usr/bin/env bash
# Set up everything suhd_ros needs in .venv, from scratch, on a machine with or without ROS 2.
#
# - With a sourced ROS 2 install (/opt/ros/<distro>, ROS_DISTRO set): the venv sees the system's
#   rclpy and message packages; only the Python packages are installed, nothing is built.
# - Without one: ROS 2 Kilted comes from PyPI wheels, their CMake files are repaired, and the
#   fallback vision_msgs interface package is built into the venv.
# Idempotent: a stamp over every input makes a second run a no-op in about a second.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${SUHD_VENV:-$root/.venv}
python=${PYTHON:-$(command -v python3.11 || command -v python3)}
stamp=$venv/.suhd-setup-stamp

ros_mode=wheels
if [[ -n "${ROS_DISTRO:-}" && -d "/opt/ros/${ROS_DISTRO}" ]]; then
  ros_mode="system-${ROS_DISTRO}"
fi

inputs_hash() {
  (
    cd "$root"
    echo "$ros_mode $python"
    cat scripts/setup_env.sh requirements/*.txt setup.py setup.cfg package.xml
    find fallback_interfaces -type f | sort | xargs cat
  ) | sha256sum | cut -d' ' -f1
}

want=$(inputs_hash)
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" && -x "$venv/bin/python" ]]; then
  echo "setup_env: $venv is up to date ($ros_mode)"
  exit 0
fi

log() { echo "setup_env: $*"; }

if [[ ! -x "$venv/bin/python" ]]; then
  log "creating $venv with $python"
  if [[ $ros_mode == wheels ]]; then
    "$python" -m venv "$venv"
  else
    "$python" -m venv --system-site-packages "$venv"
  fi
fi
pip=("$venv/bin/python" -m pip --disable-pip-version-check -q)
"${pip[@]}" install --upgrade pip

log "installing Python packages"
"${pip[@]}" install -r "$root/requirements/runtime.txt" -r "$root/requirements/dev.txt" \
  -r "$root/requirements/backends.txt" -r "$root/requirements/bags.txt"
# trackers declares opencv-python, which would shadow runtime.txt's headless OpenCV: its
# dependencies are pinned in the file instead (see its header)
"${pip[@]}" install --no-deps -r "$root/requirements/tracking.txt"

if [[ $ros_mode == wheels ]]; then
  log "installing ROS 2 Kilted wheels"
  "${pip[@]}" install -r "$root/requirements/ros.txt"

  # The message wheels' CMake files name the wheel builder's Python and numpy include paths.
  py_inc=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
  np_inc=$("$venv/bin/python" -c 'import numpy; print(numpy.get_include())')
  log "repairing include paths in the wheels' CMake files"
  stale=$(grep -rlE '/opt/python/cp311-cp311' "$venv"/share/*/cmake/*.cmake 2>/dev/null || true)
  for f in $stale; do
    sed -i -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#$np_inc#g" \
           -e "s#/opt/python/cp311-cp311/include/python3.11#$py_inc#g" "$f"
  done

  log "building the fallback vision_msgs into the venv (about a minute)"
  build=$root/build/fallback_vision_msgs
  rm -rf "$build"; mkdir -p "$root/build"
  AMENT_PREFIX_PATH=$venv CMAKE_PREFIX_PATH=$venv \
    cmake -S "$root/fallback_interfaces/vision_msgs" -B "$build" \
      -DCMAKE_INSTALL_PREFIX="$venv" -DPython3_EXECUTABLE="$venv/bin/python" \
      -DBUILD_TESTING=OFF -DCMAKE_BUILD_TYPE=Release > "$build.log" 2>&1 \
    || { tail -40 "$build.log"; exit 1; }
  AMENT_PREFIX_PATH=$venv CMAKE_PREFIX_PATH=$venv \
    cmake --build "$build" -j "$(nproc)" >> "$build.log" 2>&1 || { tail -40 "$build.log"; exit 1; }
  cmake --install "$build" >> "$build.log" 2>&1 || { tail -40 "$build.log"; exit 1; }
fi

touch "$venv/COLCON_IGNORE"  # colcon must not take the venv's share/ for packages
log "installing suhd_ros (editable)"
"${pip[@]}" install --no-build-isolation --no-deps -e "$root"

"$venv/bin/python" -c 'import rclpy, torch, vision_msgs.msg, suhd_ros' \
  || { log "the environment does not import; see the messages above"; exit 1; }
echo "$want" > "$stamp"
log "ready: $venv ($ros_mode)"
