#!/usr/bin/env bash
# test.sh - run the pytest suite against the wheels in dist/, installed.
#
# Each Linux x86_64 glibc wheel goes into a fresh venv of the CPython it was
# built for (found as build.sh finds them); pytest then runs tests/ from
# outside the source tree, after checking that `import mmapfile` loads the
# installed wheel. The Windows wheel, if any, runs the suite under Wine, as
# `make test-windows` does. musllinux and aarch64 wheels are checked by
# build.sh (auditwheel) but not run here (ci/wheels/test-aarch64.sh runs an
# aarch64 wheel under qemu).
#
# Environment:
#   WHEEL_PYTHONS  versions to test (3.15, 3.14t, ...), or "ci" as in
#                  build.sh (default: every one with a wheel in DIST)
#   PYTHON_TOOLS   where else to look for interpreters (pythons.sh)
#   DIST           the wheels (default dist)
#   WHEEL_VENVS    where the venvs go (default target/wheel-venvs)
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
DIST=${DIST:-dist}
VENVS=${WHEEL_VENVS:-target/wheel-venvs}
# shellcheck source=pythons.sh
. ci/wheels/pythons.sh

T0=$SECONDS
step() { printf '==> [test-wheels %4ss] %s\n' "$((SECONDS - T0))" "$*"; }
# pytest runs from an empty folder: neither python/ nor the repository root
# is on sys.path, so only the installed package can be imported.
RUN_DIR=$(mktemp -d "${TMPDIR:-/tmp}/mmapfile-test-wheels.XXXXXX")
trap 'rm -rf "$RUN_DIR"' EXIT

read -r -a VERSIONS <<<"${WHEEL_PYTHONS:+$(wheel_versions)}"
[ -n "${WHEEL_PYTHONS:-}" ] || read -r -a VERSIONS <<<"$SUPPORTED_VERSIONS"
tested=()
for v in "${VERSIONS[@]}"; do
    read -r pytag abitag <<<"$(wheel_tags "$v")"
    tag=$abitag
    wheels=("$DIST"/mmapfile-*-"$pytag"-"$abitag"-*manylinux*_x86_64.whl)
    if [ ! -f "${wheels[0]}" ]; then
        [ -n "${WHEEL_PYTHONS:-}" ] && { echo "test.sh: no x86_64 wheel for $v in $DIST" >&2; exit 1; }
        continue
    fi
    [ "${#wheels[@]}" -eq 1 ] || { echo "test.sh: several wheels for $v: ${wheels[*]}" >&2; exit 1; }
    python=$(python_for "$v") || { echo "test.sh: a wheel for $v but no python$v" >&2; exit 1; }
    venv=$VENVS/$tag
    step "CPython $v ($python): ${wheels[0]##*/}"
    rm -rf "$venv"
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check "${wheels[0]}" pytest hypothesis numpy
    (
        cd "$RUN_DIR"
        "$ROOT/$venv/bin/python" - "$ROOT/$venv" <<'EOF'
import os, sys, sysconfig
import mmapfile, mmapfile._mmapfile as ext
venv = os.path.realpath(sys.argv[1])
for path in (mmapfile.__file__, ext.__file__):
    if not os.path.realpath(path).startswith(venv + os.sep):
        sys.exit(f"mmapfile was imported from {path}, not from the wheel in {venv}")
# A free-threaded CPython turns the GIL back on when it imports an
# extension that does not declare free-threading support: check it stayed off.
if sysconfig.get_config_var("Py_GIL_DISABLED"):
    if sys._is_gil_enabled():
        sys.exit("importing mmapfile turned the GIL on")
    print("    free-threaded: the GIL stays off after import")
print(f"    testing {ext.__file__}")
EOF
        "$ROOT/$venv/bin/python" -m pytest -q -p no:cacheprovider "$ROOT/tests"
    )
    tested+=("$v")
done

if compgen -G "$DIST/mmapfile-*-win_amd64.whl" >/dev/null && [ "${WHEEL_WINDOWS:-1}" = 1 ]; then
    WINENV_CACHE=${WINENV_CACHE:-$HOME/.cache/mmapfile-winenv}
    step "Windows wheel under Wine"
    # shellcheck source=/dev/null
    . "$WINENV_CACHE/env.sh"
    winpy_install_wheel "$DIST"/mmapfile-*-win_amd64.whl
    winpy -m pytest -q -p no:cacheprovider tests
    tested+=("windows")
fi

if [ "${#tested[@]}" -eq 0 ]; then
    [ "${WHEEL_PYTHONS:-}" = ci ] && { echo "test.sh: no CPython besides the default one: nothing to test"; exit 0; }
    echo "test.sh: no wheel tested (run make wheels)" >&2
    exit 1
fi
step "tested: ${tested[*]}"
