#!/usr/bin/env bash
# test-aarch64.sh - run the pytest suite against the manylinux2014 aarch64
# wheel, installed, on an emulated arm64 Debian (qemu-user), here on x86_64.
#
# As root: Debian's qemu-user-static runs arm64 programs through binfmt_misc
# (mounted if it is not); debootstrap makes a minimal arm64 Debian 12 with
# its Python 3.11 once, cached in $ARM64_ROOT. The wheel for that Python is
# built (cross, with zig) unless $WHEEL names one; it is installed into a
# venv inside the root with pytest, hypothesis and numpy from PyPI, and the
# suite runs there, from an empty folder, with /proc, /dev and /dev/shm of
# the host bind-mounted. MMAPFILE_EMULATOR=qemu-user tells the tests that
# qemu cannot model some things (huge-page prctl, a 1 TiB address space):
# they skip those, only under emulation, and say why.
#
# Environment:
#   ARM64_ROOT  the cached arm64 root (default ~/.cache/mmapfile-arm64)
#   WHEEL       the wheel to test (default: built into target/wheels-aarch64)
#   SUITE       (default: the whole suite) pytest arguments, relative to tests/
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
ARM64_ROOT=${ARM64_ROOT:-$HOME/.cache/mmapfile-arm64}
T0=$SECONDS
step() { printf '==> [test-aarch64 %4ss] %s\n' "$((SECONDS - T0))" "$*"; }

[ "$(id -u)" = 0 ] || { echo "test-aarch64.sh: needs root (binfmt_misc, chroot, mounts)" >&2; exit 1; }

if ! command -v qemu-aarch64-static >/dev/null || ! command -v debootstrap >/dev/null; then
    step "installing qemu-user-static and debootstrap (apt)"
    apt-get install -y -q qemu-user-static debootstrap binfmt-support >/dev/null
fi
if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
fi
if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
    update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || update-binfmts --import qemu-aarch64
fi

if [ ! -x "$ARM64_ROOT/usr/bin/python3" ]; then
    step "debootstrap: a minimal arm64 Debian 12 with Python into $ARM64_ROOT (once)"
    rm -rf "$ARM64_ROOT.tmp"
    debootstrap --arch=arm64 --variant=minbase --include=python3,python3-venv \
        bookworm "$ARM64_ROOT.tmp" http://deb.debian.org/debian >/dev/null
    mv "$ARM64_ROOT.tmp" "$ARM64_ROOT"
fi
PYV=$(chroot "$ARM64_ROOT" /usr/bin/python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')

if [ -z "${WHEEL:-}" ]; then
    step "building the cp${PYV/./} manylinux2014 aarch64 wheel"
    DIST=target/wheels-aarch64 WHEEL_PYTHONS=$PYV WHEEL_TARGETS=aarch64-unknown-linux-gnu \
        WHEEL_WINDOWS=0 WHEEL_SDIST=0 bash ci/wheels/build.sh >/dev/null
    WHEEL=$(ls target/wheels-aarch64/mmapfile-*-cp${PYV/./}-*manylinux*_aarch64.whl)
fi

# The run's files live in the root's /tmp; the mounts go when this exits.
RUN=$ARM64_ROOT/tmp/mmapfile-test
MOUNTS=()
cleanup() {

    for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
        umount "${MOUNTS[$i]}" 2>/dev/null || umount -l "${MOUNTS[$i]}" 2>/dev/null || true
    done
    rm -rf "$RUN"
}
trap cleanup EXIT
for m in proc dev dev/shm; do
    mkdir -p "$ARM64_ROOT/$m"
    mount --bind "/$m" "$ARM64_ROOT/$m"
    MOUNTS+=("$ARM64_ROOT/$m")
done
# pip inside the root needs the host's CA bundle and index settings.
mkdir -p "$ARM64_ROOT/etc/ssl/certs"
cp -L /etc/ssl/certs/ca-certificates.crt "$ARM64_ROOT/etc/ssl/certs/"
[ -f /etc/pip.conf ] && cp /etc/pip.conf "$ARM64_ROOT/etc/pip.conf"
[ -f /etc/resolv.conf ] && cp -L /etc/resolv.conf "$ARM64_ROOT/etc/resolv.conf"

rm -rf "$RUN"
mkdir -p "$RUN/empty"
# The repository's files (the tests read docs/ and README.md too), as test.sh
# runs them from the checkout; the package itself comes from the wheel only.
git ls-files -z | tar --null -T - -cf - | tar -xf - -C "$RUN"
cp "$WHEEL" "$RUN/"
step "installing ${WHEEL##*/} into a venv of the arm64 Python $PYV"
chroot "$ARM64_ROOT" /bin/sh -c "
    set -e
    [ -x /opt/venv/bin/python ] || python3 -m venv /opt/venv
    /opt/venv/bin/python -m pip install -q --disable-pip-version-check pytest hypothesis numpy
    /opt/venv/bin/python -m pip install -q --disable-pip-version-check --force-reinstall --no-deps /tmp/mmapfile-test/${WHEEL##*/}
"
step "the suite, emulated (qemu-user)"
chroot "$ARM64_ROOT" /usr/bin/env -i PATH=/usr/bin:/bin HOME=/root MMAPFILE_EMULATOR=qemu-user \
    /bin/sh -c "cd /tmp/mmapfile-test/empty && /opt/venv/bin/python -c 'import platform, mmapfile; print(\"    \", platform.machine(), mmapfile._mmapfile.__file__)' \
        && /opt/venv/bin/python -m pytest -q -p no:cacheprovider ../tests/${SUITE:-}"
step "done"
