#!/usr/bin/env bash
# Minimal 3D Slicer 5.8.1 superbuild from local git mirrors (issue 20).
#
# Usage:  Utilities/slicer_app/build.sh [all|prepare|configure|build|timings|status]
#   all (default)  prepare + configure + build + timings
#   prepare        apt packages, local pinned mirrors, git URL rewriting, Slicer source
#   configure      configure the superbuild (only if not configured yet; FORCE_CONFIGURE=1 re-runs)
#   build          build the superbuild (ninja continues where it stopped)
#   timings        write the per-external-project times to $BUILD_ROOT/timings.md
#   status         what is running / which externals are done
#
# RESUMING: every step is idempotent.  Just run the script again, e.g.
#   nohup Utilities/slicer_app/build.sh > /work/slicer-build/build.log 2>&1 &
# The build folder ($BUILD_ROOT) and the ccache ($CCACHE_DIR) live outside the
# work tree, so a later session on this machine continues where this one stopped:
# ninja only rebuilds what is missing, and ccache serves recompiled objects.
#
# Everything is compiled with `nice -n 19 ionice -c3` so that other work keeps priority.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BUILD_ROOT="${BUILD_ROOT:-/work/slicer-build}"
export CCACHE_DIR="${CCACHE_DIR:-/work/slicer-ccache}"
MIRROR_ROOT="${MIRROR_ROOT:-/work/.mirror}"      # bare git mirrors made by the `fetch` tool
LOCAL_MIRRORS="$BUILD_ROOT/mirrors"               # pinned, shared clones of those (cheap)
SLICER_TAG="${SLICER_TAG:-v5.8.1}"
SRC="$BUILD_ROOT/Slicer"                          # Slicer source
BLD="$BUILD_ROOT/S-r"                             # superbuild tree (short path on purpose)
VENV="$BUILD_ROOT/python-venv"                    # Debian python3.11 + --system-site-packages
TOOLS="$BUILD_ROOT/tools-venv"                    # pip's cmake 3.28 (Debian's 3.25.1 is refused by Slicer)
CMAKE_PIP_VERSION="3.28.*"
JOBS="${JOBS:-2}"                                 # compile jobs inside each external project

# --- environment: Debian python only (never the pyenv one), ccache wrappers first ------------
unset PYENV_ROOT PYENV_VERSION PYTHONPATH PYTHONHOME VIRTUAL_ENV || true
export PATH="$VENV/bin:$TOOLS/bin:/usr/lib/ccache:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
export CC=/usr/lib/ccache/gcc CXX=/usr/lib/ccache/g++
export CCACHE_MAXSIZE="${CCACHE_MAXSIZE:-25G}" CCACHE_COMPILERCHECK=content CCACHE_BASEDIR="$BUILD_ROOT"
export CMAKE_BUILD_PARALLEL_LEVEL="$JOBS"         # used by `cmake --build` inside each external
export GIT_CONFIG_GLOBAL="$BUILD_ROOT/gitconfig"  # url.<mirror>.insteadOf rules (see write_gitconfig)
export GIT_TERMINAL_PROMPT=0
NICE=(nice -n 19)
command -v ionice >/dev/null && NICE+=(ionice -c3)

log() { echo "[$(date -u +%FT%TZ)] $*"; }

APT_PACKAGES=(
  build-essential git cmake ninja-build ccache
  qtbase5-dev qtbase5-private-dev qttools5-dev qttools5-dev-tools libqt5svg5-dev
  qtmultimedia5-dev libqt5xmlpatterns5-dev libqt5x11extras5-dev libqt5opengl5-dev
  zlib1g-dev libcurl4-openssl-dev libssl-dev libbz2-dev liblzma-dev libsqlite3-dev
  libarchive-dev libffi-dev rapidjson-dev
  libgl1-mesa-dev libglu1-mesa-dev libxt-dev libfontconfig1-dev
  python3.11 python3.11-dev python3-numpy python3-nose python3-pip python3-setuptools
  python3-wheel python3-packaging python3-pyparsing
  swig lua5.3
)

install_packages() {
  local missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    log "apt-get install ${missing[*]}"
    local SUDO=(); [ "$(id -u)" = 0 ] || SUDO=(sudo)
    "${SUDO[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" "${NICE[@]}" apt-get install -y -qq "${missing[@]}"
  else
    log "apt packages: all present"
  fi
}

# --- local mirrors ---------------------------------------------------------------------------
# MIRRORS: "<url as the superbuild spells it (no .git)> <owner+name of the fetched mirror> <commit>"
# The commit is the one Slicer 5.8.1 (or CTK/ITK/VTK at their pinned commits) asks for; a branch
# pin/<commit> is created so that a plain `git clone` reaches it (mirrors hold it only under
# refs/pull/* sometimes, which clone does not fetch).
MIRRORS=(
  "https://github.com/Slicer/Slicer Slicer+Slicer v5.8.1"
  "https://github.com/Slicer/ITK Slicer+ITK 29b78d73c81d6c00c393416598d16058704c535c"
  "https://github.com/commontk/CTK commontk+CTK 82cae5781621845486bad2697aed095f04cfbe76"
  "https://github.com/commontk/PythonQt commontk+PythonQt db525aff0d8c053bddf13902107b34c93c1e3a44"
  "https://github.com/commontk/AppLauncher commontk+AppLauncher 8759e03985738b8a8f3eb74ab516ba4e8ef29988"
  "https://github.com/Slicer/teem Slicer+teem e4746083c0e1dc0c137124c41eca5d23adf73bfa"
  "https://github.com/Slicer/SlicerExecutionModel Slicer+SlicerExecutionModel 91b921bd5977c3384916ba4b03705d87b26067f7"
  "https://github.com/Slicer/jsoncpp Slicer+jsoncpp 73b8e172d6615251ef851d883ef02f163e7075b2"
  "https://github.com/Slicer/ParameterSerializer Slicer+ParameterSerializer 70e95f1cdee52cc49dfc3375e956a8f5958240c7"
  "https://github.com/miloyip/rapidjson Tencent+rapidjson 973dc9c06dcd3d035ebd039cfb9ea457721ec213"
  "https://github.com/Slicer/vtkAddon Slicer+vtkAddon b5aa0615a6486b6bdceeb13bd59c2fb9f89cce42"
  "https://github.com/BRAINSia/BRAINSTools BRAINSia+BRAINSTools 3b3cfd0d45a35e924569ee930a29c4f6292a8d1f"
  # ITK remote modules enabled by Slicer's External_ITK.cmake (cloned at ITK configure time)
  "https://github.com/InsightSoftwareConsortium/itkMGHImageIO InsightSoftwareConsortium+ITKMGHImageIO 0adac35fa22945c7a5f3a63dd8d01454577c24d3"
  "https://github.com/KitwareMedical/ITKIOScanco KitwareMedical+ITKIOScanco 10b80f69048e79ab3069e89635822a6851099278"
  "https://github.com/KitwareMedical/ITKMorphologicalContourInterpolation KitwareMedical+ITKMorphologicalContourInterpolation fc7ffdc939395a272e1ccba8d027db80d0eb834e"
  "https://github.com/InsightSoftwareConsortium/ITKGrowCut InsightSoftwareConsortium+ITKGrowCut cbf93ab65117abfbf5798745117e34f22ff04728"
  "https://github.com/InsightSoftwareConsortium/ITKSimpleITKFilters InsightSoftwareConsortium+ITKSimpleITKFilters bb896868fc6480835495d0da4356d5db009592a6"
  "https://github.com/InsightSoftwareConsortium/ITKGenericLabelInterpolator InsightSoftwareConsortium+ITKGenericLabelInterpolator ebf2436469ccf82c08fab54b7446f699ad0eae01"
  "https://github.com/ntustison/ITKAdaptiveDenoising ntustison+ITKAdaptiveDenoising 24825c8d246e941334f47968553f0ae388851f0c"
  # Substitutes: the stored snapshots of Slicer/VTK (2021) and Slicer/SimpleITK (2020) lack the
  # forks' 5.8 branches, so upstream is used at the commit each fork branch is based on.
  "https://github.com/Kitware/VTK Kitware+VTK 1ff325c54ad9f214752491222977ff5508d162b4"
  "https://github.com/SimpleITK/SimpleITK SimpleITK+SimpleITK bc4449e2fab78e10d5aad72b5472270be45aa259"
  # VTK remote module SplineDrivenImageSlicer (vtkFrenetSerretFrame, needed by Markups)
  "https://github.com/martinken/midas-journal-838 martinken+midas-journal-838 5a98940c705748df5c2470331541a051559956c8"
)

local_mirror() { echo "$LOCAL_MIRRORS/$1.git"; }

# The stored mirrors are partial: large blobs are absent (sqlite3.c in VTK, a .pptx in
# BRAINSTools) and so is part of the history, so a plain `git clone` of them fails ("unable to
# read <sha>").  Hence two layers:
#   $LOCAL_MIRRORS/shared/<name>.git  `git clone --bare --shared` of the stored mirror + pin branch
#   $LOCAL_MIRRORS/<name>.git         `--depth 1` clone of the pinned commit only: same commit id,
#                                     complete tree, no history -- what the superbuild clones.
# A pinned tree that lacks blobs is replaced by a root commit with the same tree except that
# each absent blob becomes a one-line placeholder and submodules are dropped (branch
# slicer-app-<commit>); the superbuild is pointed at it explicitly (Slicer_VTK_GIT_TAG,
# Slicer_RapidJSON_GIT_TAG, BRAINSTools_SOURCE_DIR).
snapshot_commit() {  # <git dir> <commit> [<path> <blob>] -> prints the placeholder root commit
  local g="$1" c="$2" extra_path="${3:-}" extra_blob="${4:-}" idx tree ph
  idx="$(mktemp -u)"
  GIT_INDEX_FILE="$idx" git --git-dir="$g" read-tree "$c"
  # submodules (VTK's vtk-m on gitlab, RapidJSON's googletest) are not needed: drop them
  git --git-dir="$g" ls-tree -r "$c" | awk -F'\t' '$1 ~ /^160000 / || $2==".gitmodules" {print "0 0000000000000000000000000000000000000000\t"$2}' \
    | GIT_INDEX_FILE="$idx" git --git-dir="$g" update-index --index-info
  git --git-dir="$g" ls-tree -r "$c" | awk '$2=="blob"{print $3" "$4}' | while read -r sha path; do
    git --git-dir="$g" cat-file -e "$sha" 2>/dev/null && continue
    ph=$(printf 'placeholder: blob %s absent from the local mirror\n' "$sha" | git --git-dir="$g" hash-object -w --stdin)
    GIT_INDEX_FILE="$idx" git --git-dir="$g" update-index --cacheinfo "100644,$ph,$path"
  done
  [ -n "$extra_path" ] && GIT_INDEX_FILE="$idx" git --git-dir="$g" update-index --add --cacheinfo "100644,$extra_blob,$extra_path"
  tree=$(GIT_INDEX_FILE="$idx" git --git-dir="$g" write-tree); rm -f "$idx"
  GIT_AUTHOR_NAME=slicer-app GIT_AUTHOR_EMAIL=slicer-app@localhost GIT_AUTHOR_DATE="2025-03-02T00:00:00Z" \
  GIT_COMMITTER_NAME=slicer-app GIT_COMMITTER_EMAIL=slicer-app@localhost GIT_COMMITTER_DATE="2025-03-02T00:00:00Z" \
    git --git-dir="$g" commit-tree "$tree" -m "Snapshot of $c for a local Slicer build (absent blobs replaced by placeholders)"
}

# Slicer's VTK fork (slicer-v9.2.20230607-1ff325c54-2) is not in the stored Slicer/VTK mirror
# (snapshot of 2021).  Closest available: upstream VTK 1ff325c54 (the fork's base) plus the
# SplineDrivenImageSlicer remote-module file (removed upstream in 2022, kept by the fork; Slicer
# enables the module for vtkFrenetSerretFrame).  VTK's sqlite3.c is one of the absent blobs, so
# patches/0003 makes VTK use Debian's sqlite.
vtk_remote_blob() {
  printf '%s\n' '#' '# Spline Driven Image Slicer (re-added for Slicer: vtkFrenetSerretFrame is used by Markups)' '#' '' \
    'vtk_fetch_module(SplineDrivenImageSlicer' \
    '  "Spline Driven Image Slicer - http://www.vtkjournal.org/browse/publication/838"' \
    '  GIT_REPOSITORY https://github.com/martinken/midas-journal-838.git' \
    '  GIT_TAG 5a98940c705748df5c2470331541a051559956c8' \
    '  )' | git --git-dir="$1" hash-object -w --stdin
}

prepare_mirrors() {
  mkdir -p "$LOCAL_MIRRORS/shared"
  local line url name commit shared dst branch snap missing
  for line in "${MIRRORS[@]}"; do
    read -r url name commit <<<"$line"
    shared="$LOCAL_MIRRORS/shared/$name.git"; dst="$(local_mirror "$name")"
    if [ -d "$dst" ]; then continue; fi
    if [ ! -d "$MIRROR_ROOT/$name/repo" ]; then
      echo "ERROR: mirror $MIRROR_ROOT/$name/repo missing: fetch github:${name/+//} first" >&2; exit 1
    fi
    [ -d "$shared" ] || git clone -q --bare --shared "$MIRROR_ROOT/$name/repo" "$shared"
    if ! git --git-dir="$shared" cat-file -e "$commit^{commit}" 2>/dev/null; then
      echo "ERROR: $name lacks $commit" >&2; exit 1
    fi
    # (no "/" before the commit id in branch names: ExternalProject's update step would take
    #  a ref ending in "/<commit>" for a branch and fail)
    git --git-dir="$shared" branch -f "pinned-$commit" "$commit^{commit}" >/dev/null
    branch="pinned-$commit"
    missing=$(git --git-dir="$shared" ls-tree -r "$commit" | awk '$2=="blob"{print $3}' \
              | git --git-dir="$shared" cat-file --batch-check | grep -c ' missing$' || true)
    gitlinks=$(git --git-dir="$shared" ls-tree -r "$commit" | awk '$1=="160000"' | wc -l)
    if [ "$name" = Kitware+VTK ]; then
      snap=$(snapshot_commit "$shared" "$commit" Remote/SplineDrivenImageSlicer.remote.cmake "$(vtk_remote_blob "$shared")")
      branch="slicer-app-$commit"; git --git-dir="$shared" branch -f "$branch" "$snap"
    elif [ "$missing" != 0 ] || [ "$gitlinks" != 0 ]; then
      snap=$(snapshot_commit "$shared" "$commit")
      branch="slicer-app-$commit"; git --git-dir="$shared" branch -f "$branch" "$snap"
    fi
    log "local mirror $name ($branch, $missing absent blobs, $gitlinks submodules)"
    git clone -q --bare --depth 1 --branch "$branch" "file://$shared" "$dst"
  done
  VTK_GIT_TAG=$(git --git-dir="$(local_mirror Kitware+VTK)" rev-parse "slicer-app-1ff325c54ad9f214752491222977ff5508d162b4")
  RAPIDJSON_GIT_TAG=$(git --git-dir="$(local_mirror Tencent+rapidjson)" rev-parse "slicer-app-973dc9c06dcd3d035ebd039cfb9ea457721ec213")
  # BRAINSTools is a "remote module": Slicer skips its download when BRAINSTools_SOURCE_DIR is set
  BRAINSTOOLS_SRC="$BUILD_ROOT/src/BRAINSTools"
  if [ ! -d "$BRAINSTOOLS_SRC/.git" ]; then
    mkdir -p "$BUILD_ROOT/src"
    git clone -q --branch slicer-app-3b3cfd0d45a35e924569ee930a29c4f6292a8d1f \
      "$(local_mirror BRAINSia+BRAINSTools)" "$BRAINSTOOLS_SRC"
  fi
}

# Every github URL the superbuild (or CTK's / ITK's / VTK's own superbuild) clones is rewritten
# to the local mirror by git itself, so nested clones are covered too.
write_gitconfig() {
  local line url name commit dst base variants v
  {
    echo "# generated by $0 -- git URL rewriting to local mirrors"
    echo "[advice]"; echo "	detachedHead = false"
    echo "[protocol \"file\"]"; echo "	allow = always"
    for line in "${MIRRORS[@]}"; do
      read -r url name commit <<<"$line"
      dst="file://$(local_mirror "$name")"
      base="${url#https://github.com/}"
      variants=("$base" "$(echo "$base" | tr 'A-Z' 'a-z')" "$(echo "${base%%/*}" | tr 'A-Z' 'a-z')/${base#*/}")
      echo "[url \"$dst\"]"
      for v in $(printf '%s\n' "${variants[@]}" | sort -u); do
        for proto in https://github.com/ git://github.com/ http://github.com/; do
          echo "	insteadOf = $proto$v.git"
          echo "	insteadOf = $proto$v"
        done
      done
    done
  } > "$GIT_CONFIG_GLOBAL"
}

prepare_source() {
  if [ ! -d "$SRC/.git" ]; then
    log "cloning Slicer $SLICER_TAG"
    git clone -q "$(local_mirror Slicer+Slicer)" "$SRC"
    git -C "$SRC" checkout -q "$SLICER_TAG"
  fi
  local p
  for p in "$HERE"/patches/*.patch; do
    [ -e "$p" ] || continue
    if git -C "$SRC" apply --reverse --check "$p" 2>/dev/null; then continue; fi
    log "applying $(basename "$p")"
    git -C "$SRC" apply "$p"
  done
}

prepare_python() {
  if [ ! -x "$VENV/bin/python3" ]; then
    log "python venv (Debian python3.11, system site-packages) at $VENV"
    /usr/bin/python3.11 -m venv --system-site-packages --without-pip "$VENV"
  fi
  # Slicer 5.8 refuses CMake 3.25.0-3.25.2 (Debian 12 has 3.25.1): pip's cmake in its own venv
  if [ ! -x "$TOOLS/bin/cmake" ]; then
    log "cmake $CMAKE_PIP_VERSION from PyPI into $TOOLS"
    /usr/bin/python3.11 -m venv --system-site-packages --without-pip "$TOOLS"
    "$TOOLS/bin/python" -m pip install -q "cmake==$CMAKE_PIP_VERSION"
  fi
  log "cmake: $(command -v cmake) $(cmake --version | head -1)"
}

prepare() {
  mkdir -p "$BUILD_ROOT" "$CCACHE_DIR"
  ccache --max-size "$CCACHE_MAXSIZE" >/dev/null  # stored in $CCACHE_DIR/ccache.conf
  install_packages
  prepare_mirrors
  write_gitconfig
  prepare_source
  prepare_python
}

configure() {
  prepare_mirrors  # (quick when done) sets VTK_GIT_TAG and BRAINSTOOLS_SRC
  if [ -f "$BLD/build.ninja" ] && [ "${FORCE_CONFIGURE:-0}" != 1 ]; then
    log "superbuild already configured ($BLD); FORCE_CONFIGURE=1 to re-run cmake"; return
  fi
  mkdir -p "$BLD"
  local py="$VENV/bin/python3"
  log "configuring $BLD"
  "${NICE[@]}" cmake -S "$SRC" -B "$BLD" -G Ninja \
    -DCMAKE_BUILD_TYPE:STRING=Release \
    -DCMAKE_C_COMPILER:FILEPATH="$CC" -DCMAKE_CXX_COMPILER:FILEPATH="$CXX" \
    -DSlicer_CMake_HTTPS_Supported:BOOL=TRUE \
    -DBUILD_TESTING:BOOL=OFF \
    -DSlicer_BUILD_DOCUMENTATION:BOOL=OFF \
    -DSlicer_BUILD_DICOM_SUPPORT:BOOL=OFF \
    -DSlicer_BUILD_EXTENSIONMANAGER_SUPPORT:BOOL=OFF \
    -DSlicer_BUILD_APPLICATIONUPDATE_SUPPORT:BOOL=OFF \
    -DSlicer_BUILD_WEBENGINE_SUPPORT:BOOL=OFF \
    -DSlicer_BUILD_MULTIMEDIA_SUPPORT:BOOL=OFF \
    -DSlicer_BUILD_I18N_SUPPORT:BOOL=OFF \
    -DSlicer_BUILD_USAGE_LOGGING_SUPPORT:BOOL=OFF \
    -DSlicer_BUILD_QT_DESIGNER_PLUGINS:BOOL=OFF \
    -DSlicer_USE_QtTesting:BOOL=OFF \
    -DSlicer_USE_CTKAPPLAUNCHER:BOOL=OFF \
    -DSlicer_USE_PYTHONQT:BOOL=ON \
    -DSlicer_USE_PYTHONQT_WITH_OPENSSL:BOOL=OFF \
    -DSlicer_USE_NUMPY:BOOL=ON \
    -DSlicer_USE_SCIPY:BOOL=OFF \
    -DSlicer_USE_SimpleITK:BOOL=ON \
    -DSlicer_BUILD_CLI_SUPPORT:BOOL=ON \
    -DSlicer_BUILD_CLI:BOOL=ON \
    -DSlicer_BUILD_LEGACY_CLI:BOOL=OFF \
    "-DSlicer_CLIMODULES_ENABLED:STRING=ResampleDTIVolume;ResampleScalarVectorDWIVolume" \
    -DSlicer_BUILD_BRAINSTOOLS:BOOL=ON \
    -DSlicer_BUILD_MULTIVOLUME_SUPPORT:BOOL=OFF \
    -DSlicer_BUILD_SimpleFilters:BOOL=OFF \
    -DSlicer_BUILD_CompareVolumes:BOOL=OFF \
    -DSlicer_BUILD_LandmarkRegistration:BOOL=OFF \
    -DSlicer_BUILD_SurfaceToolbox:BOOL=OFF \
    -DSlicer_VTK_SMP_IMPLEMENTATION_TYPE:STRING=Sequential \
    -DSlicer_USE_SYSTEM_python:BOOL=ON \
    -DSlicer_REQUIRED_PYTHON_VERSION:STRING=3.11.2 \
    -DPYTHON_EXECUTABLE:FILEPATH="$py" \
    -DPython3_EXECUTABLE:FILEPATH="$py" \
    -DSlicer_USE_SYSTEM_zlib:BOOL=ON \
    -DSlicer_USE_SYSTEM_curl:BOOL=ON \
    -DSlicer_USE_SYSTEM_LibArchive:BOOL=ON \
    -DSlicer_USE_SYSTEM_OpenSSL:BOOL=ON \
    -DSlicer_USE_SYSTEM_bzip2:BOOL=ON \
    -DSlicer_USE_SYSTEM_LZMA:BOOL=ON \
    -DSlicer_USE_SYSTEM_sqlite:BOOL=ON \
    -DSlicer_USE_SYSTEM_LibFFI:BOOL=ON \
    -DSWIG_EXECUTABLE:FILEPATH=/usr/bin/swig4.0 \
    -DSWIG_DIR:PATH=/usr/share/swig4.0 \
    -DSlicer_VTK_GIT_REPOSITORY:STRING="file://$(local_mirror Kitware+VTK)" \
    -DSlicer_VTK_GIT_TAG:STRING="$VTK_GIT_TAG" \
    -DBRAINSTools_SOURCE_DIR:PATH="$BRAINSTOOLS_SRC" \
    -DSlicer_RapidJSON_GIT_TAG:STRING="$RAPIDJSON_GIT_TAG" \
    -DSlicer_SimpleITK_GIT_REPOSITORY:STRING="file://$(local_mirror SimpleITK+SimpleITK)" \
    -DSlicer_SimpleITK_GIT_TAG:STRING=bc4449e2fab78e10d5aad72b5472270be45aa259 \
    ${EXTRA_CMAKE_ARGS:-}
}

build() {
  # one build at a time: two ninjas in the same tree would corrupt it
  exec 9>"$BUILD_ROOT/.build.lock"
  if ! flock -n 9 || pgrep -f "ninja -C $BLD " >/dev/null; then
    log "a build of $BLD is already running (see: $0 status); not starting another"; return 1
  fi
  log "building $BLD (outer ninja -j1: one external project at a time, each with $JOBS jobs)"
  local rc=0
  # CPU seconds of this process group, once a minute (the machine is shared: wall time alone
  # says little); ep_timings.py turns them into CPU seconds per external project
  /usr/bin/python3 "$HERE/cpu_sampler.py" "$(ps -o pgid= $$ | tr -d ' ')" "$BUILD_ROOT/cpu.csv" 60 &
  # -k 0: keep going with independent externals when one fails
  "${NICE[@]}" ninja -C "$BLD" -j1 -k 0 ${NINJA_TARGETS:-} || rc=$?
  log "ninja exited with $rc"
  return $rc
}

timings() {
  /usr/bin/python3 "$HERE/ep_timings.py" "$BLD" > "$BUILD_ROOT/timings.md" || true
  log "wrote $BUILD_ROOT/timings.md"
}

status() {
  pgrep -a ninja | grep -F "$BLD" || echo "no ninja running on $BLD"
  timings >/dev/null; cat "$BUILD_ROOT/timings.md"
}

cmd="${1:-all}"
case "$cmd" in
  prepare) prepare ;;
  configure) configure ;;
  build) rc=0; build || rc=$?; timings; exit $rc ;;
  timings) timings; cat "$BUILD_ROOT/timings.md" ;;
  status) status ;;
  all) prepare; configure; rc=0; build || rc=$?; timings; exit $rc ;;
  *) sed -n 2,18p "$0"; exit 2 ;;
esac
