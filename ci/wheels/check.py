"""Checks every Linux wheel in a folder with `auditwheel show`: the wheel must
be consistent with the platform tags in its file name (a manylinux_2_17 wheel
may need no glibc newer than 2.17, a musllinux_1_2 wheel no musl newer than
1.2). Prints one line per wheel: size, the tag auditwheel grants, and the
newest glibc symbol version the wheel uses.

    python check.py DIST
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

# manylinux_2_17_x86_64 -> ("manylinux", (2, 17), "x86_64"); the legacy alias
# manylinux2014_x86_64 is glibc 2.17.
_TAG = re.compile(r"^(manylinux|musllinux)_(\d+)_(\d+)_(\w+)$")
_ALIASES = {"manylinux2014": (2, 17), "manylinux2010": (2, 12), "manylinux1": (2, 5)}


def parse_tag(tag: str) -> tuple[str, tuple[int, int], str] | None:
    match = _TAG.match(tag)
    if match:
        return match[1], (int(match[2]), int(match[3])), match[4]
    for alias, version in _ALIASES.items():
        if tag.startswith(alias + "_"):
            return "manylinux", version, tag[len(alias) + 1 :]
    return None


def check(wheel: Path) -> str:
    """Returns the report line for ``wheel``; raises ValueError if it fails."""
    claimed = [parse_tag(t) for t in wheel.stem.split("-")[-1].split(".")]
    if not claimed or None in claimed:
        raise ValueError(f"{wheel.name}: not a manylinux or musllinux wheel")
    out = subprocess.run(
        [sys.executable, "-m", "auditwheel", "show", str(wheel)],
        capture_output=True,
        text=True,
        check=False,
    )
    text = " ".join(out.stdout.split())
    if out.returncode != 0:
        raise ValueError(f"{wheel.name}: auditwheel failed:\n{out.stdout}{out.stderr}")
    found = re.search(r'consistent with the following platform tag: "([^"]+)"', text)
    granted = parse_tag(found[1]) if found else None
    if granted is None:
        raise ValueError(f"{wheel.name}: auditwheel grants no manylinux/musllinux tag:\n{text}")
    for family, version, arch in claimed:
        if (family, arch) != (granted[0], granted[2]) or version < granted[1]:
            claim = f"{family} {version} {arch}"
            raise ValueError(f"{wheel.name}: claims {claim}, auditwheel grants {found[1]}")
    glibc = sorted(
        {tuple(map(int, v.split("."))) for v in re.findall(r"GLIBC_(\d+(?:\.\d+)+)", text)}
    )
    newest = "GLIBC_" + ".".join(map(str, glibc[-1])) if glibc else "no glibc symbols"
    size = wheel.stat().st_size
    return f"ok  {wheel.name}  {size / 1e6:.2f} MB  auditwheel: {found[1]}  newest: {newest}"


def main() -> int:
    wheels = sorted(p for p in Path(sys.argv[1]).glob("*.whl") if "linux" in p.name)
    if not wheels:
        print(f"check.py: no Linux wheels in {sys.argv[1]}", file=sys.stderr)
        return 1
    failed = 0
    for wheel in wheels:
        try:
            print(check(wheel), flush=True)
        except ValueError as exc:
            print(f"FAIL {exc}", flush=True)
            failed += 1
    print(f"{len(wheels) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
