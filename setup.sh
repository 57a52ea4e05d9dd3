#!/usr/bin/env bash
# Set up everything ctcforge and its tests need on a Debian 12 machine with Python 3.11:
# system packages, a virtualenv with the pinned Python deps, and kenlm's lmplz/build_binary.
# Safe to run again: each step checks first and skips when already done, so a rerun
# takes seconds. CTCFORGE_VENV overrides the venv location (default .venv in the repo).
set -euo pipefail

START=$SECONDS
cd "$(dirname "${BASH_SOURCE[0]}")"
ROOT=$PWD

VENV=${CTCFORGE_VENV:-.venv}
case $VENV in /*) ;; *) VENV=$ROOT/$VENV ;; esac

REQ=ctcforge/templates/repo/requirements.txt
REQ_NODEPS=ctcforge/templates/repo/requirements-nodeps.txt
REQ_DEV=requirements-dev.txt
REQ_TOOL=requirements-tool.txt
KENLM_VERSION=0.3.0
KENLM_CACHE=${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/ctcforge/kenlm-$KENLM_VERSION
APT_PACKAGES=(ffmpeg espeak-ng git cmake build-essential
    libboost-program-options-dev libboost-system-dev libboost-thread-dev libboost-test-dev
    zlib1g-dev libbz2-dev liblzma-dev)

# pip's own chatter would drown the progress lines; errors still come through.
export PIP_DISABLE_PIP_VERSION_CHECK=1

say() { echo "setup: $*"; }
die() { echo "setup: error: $*" >&2; exit 1; }

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# ---- Python interpreter -----------------------------------------------------------
is_py311() { "$1" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; }
PY=
for cand in python3.11 python3; do
    if command -v "$cand" >/dev/null 2>&1 && is_py311 "$cand"; then PY=$(command -v "$cand"); break; fi
done
[ -n "$PY" ] || die "need Python 3.11 or newer (python3.11 or python3 on PATH)"

# Debian's own python3 ships without ensurepip; `python -m venv` then fails unless
# python3-venv is installed, so ask apt for it alongside the rest.
if ! "$PY" -c 'import ensurepip, venv' >/dev/null 2>&1; then
    APT_PACKAGES+=(python3-venv)
fi

# ---- apt packages -----------------------------------------------------------------
if command -v dpkg-query >/dev/null 2>&1; then
    missing=()
    for pkg in "${APT_PACKAGES[@]}"; do
        status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
        [ "$status" = "install ok installed" ] || missing+=("$pkg")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        if [ "$(id -u)" -ne 0 ]; then
            die "missing apt packages: ${missing[*]} (run this as root, or: sudo apt-get install ${missing[*]})"
        fi
        say "installing apt packages: ${missing[*]}..."
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}"
    fi
    say "apt packages ok"
else
    say "no dpkg-query (not Debian?); make sure these are installed: ${APT_PACKAGES[*]}"
fi

# ---- virtualenv -------------------------------------------------------------------
if [ -e "$VENV" ] && ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
    # A venv whose interpreter is gone (copied from elsewhere, Python removed) cannot be
    # repaired in place. Only remove what is recognisably a venv, never an arbitrary dir.
    [ -f "$VENV/pyvenv.cfg" ] || die "$VENV exists but is not a virtualenv; move it away or set CTCFORGE_VENV"
    say "recreating broken venv at $VENV"
    rm -rf "$VENV"
fi
if [ ! -e "$VENV" ]; then
    "$PY" -m venv "$VENV"
    say "created venv at $VENV ($("$VENV/bin/python" --version))"
else
    say "venv ok ($VENV)"
fi
VPY=$VENV/bin/python

# The local pip config points at file:// indexes that may be absent; pip warns about
# each one on every call, which buries real errors. grep's status is swallowed so the
# pipeline's status is pip's (pipefail).
pip_quiet() {
    "$VPY" -m pip "$@" 2>&1 | { grep -v "WARNING: Location 'file:///opt/pypi" || true; }
}

# ---- Python dependencies ----------------------------------------------------------
# The stamp covers every file that decides what gets installed, plus a recipe tag to
# bump when the install commands below change.
deps_hash() {
    { echo "recipe 1"; cat "$REQ" "$REQ_NODEPS" "$REQ_DEV" "$REQ_TOOL" pyproject.toml; } | sha256sum | cut -d' ' -f1
}
for f in "$REQ" "$REQ_NODEPS" "$REQ_DEV" "$REQ_TOOL" pyproject.toml; do
    [ -f "$f" ] || die "missing $f"
done
STAMP=$VENV/.ctcforge-deps.sha256
want=$(deps_hash)
have=$(cat "$STAMP" 2>/dev/null || true)
if [ "$want" != "$have" ]; then
    say "installing Python dependencies (first time about 3 minutes, about 6 GB)..."
    # Dev tools go in with the first batch: installed after pyctcdecode, pip's resolver
    # would print an ERROR about pyctcdecode's numpy<2 pin, which is deliberate here.
    pip_quiet install -q -r "$REQ" -r "$REQ_DEV" -r "$REQ_TOOL" || die "pip install -r $REQ -r $REQ_DEV -r $REQ_TOOL failed"
    # --no-deps: these declare pins (numpy<2, their own torch) that would undo requirements.txt.
    pip_quiet install -q --no-deps -r "$REQ_NODEPS" || die "pip install -r $REQ_NODEPS failed"
    pip_quiet install -q --no-deps -e . || die "pip install -e . failed"
    # Written last so an interrupted install is retried on the next run.
    echo "$want" > "$STAMP"
fi
say "Python dependencies ok"

# ---- kenlm binaries ---------------------------------------------------------------
# The kenlm wheel has only the Python module; pyctcdecode's LM needs an ARPA/binary
# built by lmplz and build_binary, which come only from compiling the C++ source.
# Both exit non-zero on --help, so "works" means executable and loadable: the dynamic
# loader exits 126/127 when the file or one of its shared libraries is unusable.
runs() {
    local rc=0
    [ -x "$1" ] || return 1
    "$1" --help >/dev/null 2>&1 </dev/null || rc=$?
    [ "$rc" -lt 126 ]
}
kenlm_ok() { runs "$1/lmplz" && runs "$1/build_binary"; }

build_kenlm() {
    local src=$TMP/kenlm-src build=$TMP/kenlm-build
    say "building kenlm lmplz/build_binary (about 2 minutes)..."
    mkdir -p "$src" "$build"
    # --no-binary names kenlm only: with :all: pip would also compile kenlm's build
    # requirements (cmake itself) from source, which takes far longer than kenlm.
    pip_quiet download -q --no-deps --no-binary kenlm "kenlm==$KENLM_VERSION" -d "$src" \
        || die "could not download the kenlm==$KENLM_VERSION sdist"
    tar -xzf "$src"/kenlm-"$KENLM_VERSION".tar.gz -C "$src"
    if ! { cmake -S "$src/kenlm-$KENLM_VERSION" -B "$build" -DCMAKE_BUILD_TYPE=Release \
            && make -C "$build" -j2 lmplz build_binary; } >"$TMP/kenlm-build.log" 2>&1; then
        tail -n 40 "$TMP/kenlm-build.log" >&2
        die "building kenlm failed (log above)"
    fi
    install -m 755 "$build/bin/lmplz" "$build/bin/build_binary" "$VENV/bin/"
    # Cache for other clones on this machine; a cache that cannot be written only costs
    # a rebuild next time, so it is not an error. Copy then rename, so a concurrent
    # reader never sees half a binary.
    if mkdir -p "$KENLM_CACHE" 2>/dev/null; then
        for b in lmplz build_binary; do
            if ! { cp "$build/bin/$b" "$KENLM_CACHE/.$b.tmp" \
                    && mv -f "$KENLM_CACHE/.$b.tmp" "$KENLM_CACHE/$b"; } 2>/dev/null; then
                say "could not cache $b in $KENLM_CACHE (ignored)"
            fi
        done
    fi
}

if kenlm_ok "$VENV/bin"; then
    say "kenlm binaries ok"
elif kenlm_ok "$KENLM_CACHE"; then
    install -m 755 "$KENLM_CACHE/lmplz" "$KENLM_CACHE/build_binary" "$VENV/bin/"
    say "kenlm binaries copied from $KENLM_CACHE"
else
    build_kenlm
    say "kenlm binaries built"
fi

# A binary that loads can still be broken (wrong build, missing runtime pieces); the
# tests need lmplz to really produce an ARPA, so prove it on a tiny corpus.
printf '%s\n' "the cat sat" "the dog sat" "a cat ran" "a dog ran" "the cat ran" > "$TMP/corpus.txt"
if ! "$VENV/bin/lmplz" --discount_fallback -o 3 -S 10% < "$TMP/corpus.txt" > "$TMP/lm.arpa" 2> "$TMP/lmplz.log" \
        || ! grep -q '^ngram 3=' "$TMP/lm.arpa"; then
    tail -n 20 "$TMP/lmplz.log" >&2
    die "$VENV/bin/lmplz could not build an ARPA from a 5-line text; delete $VENV/bin/lmplz and $KENLM_CACHE and rerun"
fi
if ! "$VENV/bin/build_binary" "$TMP/lm.arpa" "$TMP/lm.bin" > "$TMP/build_binary.log" 2>&1; then
    tail -n 20 "$TMP/build_binary.log" >&2
    die "$VENV/bin/build_binary could not convert an ARPA; delete $VENV/bin/build_binary and $KENLM_CACHE and rerun"
fi
say "kenlm lmplz/build_binary verified"

say "done in $((SECONDS - START))s"
