#!/usr/bin/env bash
# build.sh - build the release wheels and the sdist into dist/, here.
#
#   Linux:   manylinux2014 (glibc 2.17) and musllinux_1_2, x86_64 and aarch64,
#            cross-linked with zig (PyPI's `ziglang`) so that the wheels only
#            need the oldest glibc the tag promises; each wheel is checked
#            with `auditwheel show` (ci/wheels/check.py). The musllinux
#            ones get their libc's name fixed first (ci/wheels/fix_musl.py).
#   Windows: x86_64, cross-built with mingw (as `make test-windows` does),
#            for the Python of the Wine environment, if it is set up.
#   sdist:   with the LICENSE.
#
# One wheel per CPython minor version found on this machine (the binding
# uses CPython's non-limited API, so there is no abi3 wheel: see
# docs/releasing.md).
#
# Environment:
#   WHEEL_PYTHONS  versions to build for (default: every one of 3.9 ...
#                  3.15 and 3.14t found; "ci": the oldest and the two newest
#                  other than the default python3's and the free-threaded one,
#                  see pythons.sh)
#   PYTHON_TOOLS   where else to look for interpreters (pythons.sh)
#   WHEEL_TARGETS  Linux targets (default: all four; e.g. "x86_64-unknown-linux-gnu")
#   WHEEL_WINDOWS  0 to skip the Windows wheel (default 1)
#   WHEEL_SDIST    0 to skip the sdist (default 1)
#   DIST           output folder (default dist)
#   VENV           the venv with maturin, ziglang and auditwheel (default .venv)
set -euo pipefail
cd "$(dirname "$0")/../.."
HERE=ci/wheels
VENV=${VENV:-.venv}
DIST=${DIST:-dist}
export PATH="$PWD/$VENV/bin:$PATH"
# shellcheck source=pythons.sh
. "$HERE/pythons.sh"

LINUX_TARGETS=(${WHEEL_TARGETS:-x86_64-unknown-linux-gnu aarch64-unknown-linux-gnu
    x86_64-unknown-linux-musl aarch64-unknown-linux-musl})
read -r -a VERSIONS <<<"$(wheel_versions)"
if [ "${#VERSIONS[@]}" -eq 0 ]; then
    [ "${WHEEL_PYTHONS:-}" = ci ] && { echo "build.sh: no CPython besides the default one: nothing to build"; exit 0; }
    echo "build.sh: no CPython 3.9+ found" >&2
    exit 1
fi
HOST=$(rustc -vV | sed -n 's/^host: //p')

T0=$SECONDS
step() { printf '==> [wheels %4ss] %s\n' "$((SECONDS - T0))" "$*"; }

rm -rf "$DIST"
mkdir -p "$DIST"
rustup target add "${LINUX_TARGETS[@]}" >/dev/null

for target in "${LINUX_TARGETS[@]}"; do
    case $target in
        *-linux-gnu) compat=manylinux2014 ;;
        *-linux-musl) compat=musllinux_1_2 ;;
        *) echo "build.sh: unknown target $target" >&2; exit 1 ;;
    esac
    for v in "${VERSIONS[@]}"; do
        # A native build asks the interpreter itself; a cross build uses
        # maturin's copy of that version's build configuration.
        interp=python$v
        if [ "$target" = "$HOST" ]; then
            interp=$(python_for "$v") || { echo "build.sh: no python$v" >&2; exit 1; }
        fi
        step "$target ($compat), CPython $v"
        maturin build --release --zig --compatibility "$compat" --target "$target" \
            -i "$interp" -o "$DIST" --quiet
    done
done

if compgen -G "$DIST/*musllinux*.whl" >/dev/null; then
    step "musllinux wheels: name musl's libc as musl systems do (fix_musl.py)"
    python3 "$HERE/fix_musl.py" "$DIST"/*musllinux*.whl
fi

if [ "${WHEEL_WINDOWS:-1}" = 1 ]; then
    WINENV_CACHE=${WINENV_CACHE:-$HOME/.cache/mmapfile-winenv}
    if [ -f "$WINENV_CACHE/env.sh" ]; then
        # shellcheck source=/dev/null
        . "$WINENV_CACHE/env.sh"
        # The Wine environment's CPython (ci/windows/windows-env.sh).
        step "x86_64-pc-windows-gnu, CPython 3.13"
        maturin build --release --target x86_64-pc-windows-gnu -i python3.13 \
            -o "$DIST" --quiet
    else
        step "no Windows wheel: run 'bash ci/windows/windows-env.sh' first"
    fi
fi

if [ "${WHEEL_SDIST:-1}" = 1 ]; then
    step "sdist"
    maturin sdist -o "$DIST" >/dev/null
fi

step "checking the Linux wheels with auditwheel"
python3 "$HERE/check.py" "$DIST"
ls -l "$DIST"
