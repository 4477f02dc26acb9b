"""Command line for named blocks and named file mappings: ``python -m mmapfile``
(or ``mmapfile``).

Exit codes: 0 success, 1 the operation failed (no such block, permission
denied, ...), 2 bad usage (unknown command, invalid name or number).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, Callable, NoReturn

from . import _mmapfile

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

PROG = "mmapfile"


class _Failure(Exception):
    """An error to report on stderr with an exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def _owner(uid: int) -> str:
    try:
        import pwd

        return pwd.getpwuid(uid).pw_name
    except (ImportError, KeyError):
        return str(uid)


def _age(changed: float | None) -> str:
    if changed is None:
        return "?"
    seconds = max(0, int(time.time() - changed))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _holders(info: dict[str, Any]) -> str:
    holders = info["holders"]
    if holders is None:
        return "?"
    return "0 (dead)" if holders == 0 else str(holders)


def _number(text: str) -> int:
    """A non-negative integer, decimal or with a 0x/0o/0b prefix."""
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text}")
    return value


def _call(func: Callable[..., Any], *args: Any) -> Any:
    """Runs a core call, turning its errors into exit codes."""
    try:
        return func(*args)
    except ValueError as exc:  # invalid name or argument
        raise _Failure(str(exc), EXIT_USAGE) from None
    except NotImplementedError as exc:  # Windows: blocks cannot be listed
        raise _Failure(str(exc), EXIT_FAILED) from None
    except OSError as exc:
        what = exc.strerror or str(exc)
        if exc.filename is None and len(args) > 0 and isinstance(args[0], str):
            what = f"{args[0]}: {what}"
        raise _Failure(what, EXIT_FAILED) from None


def cmd_ls(args: argparse.Namespace) -> int:
    blocks = _call(_mmapfile._list_blocks)
    if args.json:
        print(json.dumps(blocks, indent=2))
        return EXIT_OK
    if not blocks:
        print("no named blocks", file=sys.stderr)
        return EXIT_OK
    rows = [("NAME", "KIND", "SIZE", "HOLDERS", "OWNER", "AGE", "FILE")]
    for b in blocks:
        rows.append(
            (
                b["name"],
                b["kind"],
                str(b["size"]),
                _holders(b),
                _owner(b["owner"]),
                _age(b["changed"]),
                b["file"] or "-",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths)]
        print("  ".join([*cells, row[-1]]))
    return EXIT_OK


def cmd_info(args: argparse.Namespace) -> int:
    info = _call(_mmapfile._block_info, args.name)
    if args.json:
        print(json.dumps(info, indent=2))
        return EXIT_OK
    shm = info["shm_name"]
    lines = [
        ("name", info["name"]),
        ("kind", "file mapping" if info["kind"] == "file" else "block of shared memory"),
        *([("file", info["file"])] if info["file"] is not None else []),
        ("shm object", shm or "-"),
        *(
            [("segment", f"System V id {info['segment']}")]
            if info.get("segment") is not None
            else []
        ),
        ("path", info["path"] or "-"),
        ("size", f"{info['size']} bytes"),
        ("holders", _holders(info)),
        ("owner", f"{_owner(info['owner'])} (uid {info['owner']})"),
        ("mode", oct(info["mode"])),
        ("age", _age(info["changed"])),
    ]
    for key, value in lines:
        print(f"{key + ':':12}{value}")
    return EXIT_OK


def _hexdump(data: bytes, base: int) -> list[str]:
    lines = []
    previous = None
    skipping = False
    for i in range(0, len(data), 16):
        chunk = data[i : i + 16]
        # Like hexdump -C: repeated full lines collapse into one "*".
        if chunk == previous and len(chunk) == 16:
            if not skipping:
                lines.append("*")
                skipping = True
            continue
        skipping = False
        previous = chunk
        hexes = " ".join(f"{b:02x}" for b in chunk)
        hexes = hexes[:23] + " " + hexes[23:] if len(chunk) > 8 else hexes
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append(f"{base + i:08x}  {hexes:<48}  |{text}|")
    lines.append(f"{base + len(data):08x}")
    return lines


def cmd_dump(args: argparse.Namespace) -> int:
    data = _call(_mmapfile._read_block, args.name, args.offset, args.length)
    print("\n".join(_hexdump(data, args.offset)))
    return EXIT_OK


def cmd_rm(args: argparse.Namespace) -> int:
    info = _call(_mmapfile._block_info, args.name)
    holders = info["holders"]
    # Where holders cannot be counted, removing finds out whether any remain.
    held = _call(_mmapfile._remove_block, args.name)
    if holders or held:
        by = f"{holders} mapping(s)" if holders else "live mappings"
        print(
            f"{PROG}: warning: {info['name']} was held by {by}; they keep "
            "their memory, but the name now opens a new block",
            file=sys.stderr,
        )
    if info["file"] is not None:
        print(f"{PROG}: the file {info['file']} is kept", file=sys.stderr)
    print(f"removed {info['name']}")
    return EXIT_OK


def cmd_gc(args: argparse.Namespace) -> int:
    removed = _call(_mmapfile._collect_garbage)
    for name in removed:
        print(f"removed {name}")
    if not removed:
        print("no dead blocks", file=sys.stderr)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Inspect and clean up mmapfile's named blocks of shared memory and "
        "named file mappings (a name that maps a file; the file itself is never removed).",
        epilog="Exit codes: 0 success, 1 the operation failed, 2 bad usage. "
        "Names may carry a Local\\ or Global\\ prefix.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser(
        "ls",
        help="list this user's named blocks",
        description="List every named block and named file mapping of this user: name, "
        "kind (block or file), size, live holders (0 (dead): all holders exited without "
        "closing; `gc` removes it), owner, age (since creation or the last resize) and, "
        "for a file mapping, the file. On Linux the name of a block whose memory the "
        "kernel freed with its last holder is removed instead of listed.",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_ls)

    p = sub.add_parser("info", help="show one block", description="Show one named block.")
    p.add_argument("name", help="the block's name")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser(
        "dump",
        help="hex dump of a block's bytes",
        description="Hex dump of a block's bytes (for a file mapping, the file's), read "
        "without holding the block (so a dead block can be inspected before `gc`).",
    )
    p.add_argument("name", help="the block's name")
    p.add_argument("--offset", type=_number, default=0, help="first byte (default 0)")
    p.add_argument("--length", type=_number, default=None, help="bytes to show (default: all)")
    p.set_defaults(func=cmd_dump)

    p = sub.add_parser(
        "rm",
        help="force removal of a block's name",
        description="Remove a block's name now, even if it is held (with a warning). "
        "Holders keep their memory; the next open of the name creates a new block. "
        "A file mapping's file is kept.",
    )
    p.add_argument("name", help="the block's name")
    p.set_defaults(func=cmd_rm)

    p = sub.add_parser(
        "gc",
        help="remove dead blocks",
        description="Remove every block of this user whose holders are all dead, "
        "and print what was removed. Live blocks are never touched.",
    )
    p.set_defaults(func=cmd_gc)
    return parser


def main(argv: list[str] | None = None) -> NoReturn:
    args = build_parser().parse_args(argv)
    try:
        code = args.func(args)
    except _Failure as failure:
        print(f"{PROG}: error: {failure}", file=sys.stderr)
        code = failure.code
    sys.exit(code)


if __name__ == "__main__":
    main()
