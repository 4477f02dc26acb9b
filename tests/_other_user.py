"""Starts a Python child that runs as another user (``nobody``), whatever
the interpreter.

``setpriv --reuid=nobody python ...`` only works with an interpreter that
``nobody`` can load, and one installed under ``/root`` (pyenv's, say) is not:
the loader cannot read its ``libpython`` there. So the child starts as the
caller (root), imports what it will need while it still can read it, then
gives up root for good, with ``setgroups``/``setgid``/``setuid`` (real,
effective and saved ids, no supplementary groups, hence no capabilities),
before it runs the code under test. From there on the OS treats it as any
process of ``nobody``: that is what the tests check (permissions on a block,
the blocks ``gc`` sees as this user's).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

_DROP_THEN_RUN = """
import os, pwd, sys
code = sys.argv.pop(1)
for module in sys.argv.pop(1).split(","):
    __import__(module)
user = pwd.getpwnam("nobody")
os.setgroups([])
os.setgid(user.pw_gid)
os.setuid(user.pw_uid)
if os.getresuid() != (user.pw_uid,) * 3 or os.getresgid() != (user.pw_gid,) * 3:
    sys.exit("the child did not become nobody")
exec(compile(code, "<as nobody>", "exec"), {"__name__": "__main__"})
"""


def as_nobody(code: str, *args: str, preload: tuple[str, ...] = ("mmapfile",)) -> list[str]:
    """The command that runs ``code`` (with ``sys.argv[1:] == args``) as
    ``nobody``, after importing the modules ``preload`` as root. The caller
    must be root."""
    return [sys.executable, "-c", _DROP_THEN_RUN, textwrap.dedent(code), ",".join(preload), *args]


# The command line (`python -m mmapfile ...`) as nobody: everything it may
# import is imported first.
CLI_AS_NOBODY = (
    "import sys\nfrom mmapfile.__main__ import main\nmain(sys.argv[1:])\n",
    ("mmapfile", "mmapfile.__main__", "argparse", "gettext", "locale", "json", "shutil")
    # argparse imports _colorize when it builds a parser, from 3.14 on.
    + (("_colorize",) if sys.version_info >= (3, 14) else ()),
)


def python_command(code: str, *args: str, as_other_user: bool = False) -> list[str]:
    """The command that runs ``code`` with ``sys.argv[1:] == args``, as
    ``nobody`` if ``as_other_user``, else as the caller."""
    if as_other_user:
        return as_nobody(code, *args)
    return [sys.executable, "-c", textwrap.dedent(code), *args]


def start_python(code: str, *args: str, as_other_user: bool = False) -> subprocess.Popen:
    """Starts a Python child running ``code`` (``sys.argv[1:] == args``),
    as ``nobody`` if ``as_other_user``, with its stdin, stdout and stderr
    piped as text."""
    return subprocess.Popen(
        python_command(code, *args, as_other_user=as_other_user),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
