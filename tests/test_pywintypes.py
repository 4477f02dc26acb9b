"""Where pywin32's ``pywintypes`` is importable, ``mmapfile.error`` is also a
``pywintypes.error`` with pywin32's ``args`` ``(winerror, funcname,
strerror)``, so that code written for pywin32 (``except pywintypes.error``)
catches ours. Here, on any OS, with a stand-in ``pywintypes`` module of
pywin32's shape (a Python class deriving from Exception, as pywin32 312's is:
checked under Wine); tests/compat runs the real one under Wine."""

from __future__ import annotations

import errno
import json
import subprocess
import sys
import textwrap

import mmapfile
import pytest

STAND_IN = """
class error(Exception):
    def __init__(self, *args):
        Exception.__init__(self, *args)
        self.winerror, self.funcname, self.strerror = (list(args) + [None] * 3)[:3]
"""

PROBE = """
import json, os, sys, tempfile
import mmapfile, mmapfile._mmapfile as ext
try:
    import pywintypes
except ImportError:
    pywintypes = None
missing = os.path.join(tempfile.gettempdir(), "no-such-dir-for-mmapfile", "f")
try:
    mmapfile.mmapfile(missing, None, 4096)
except OSError as e:
    print(json.dumps({
        "pywintypes": pywintypes is not None,
        "is_pywintypes_error": pywintypes is not None and isinstance(e, pywintypes.error),
        "is_oserror": isinstance(e, OSError),
        "is_mmapfile_error": isinstance(e, mmapfile.error),
        "is_extension_error": isinstance(e, ext.error),
        "type": type(e).__module__ + "." + type(e).__qualname__,
        "args": list(e.args),
        "errno": e.errno,
        "winerror": e.winerror,
        "funcname": e.funcname,
        "strerror": e.strerror,
        "str": str(e),
    }))
"""


def probe(tmp_path, with_pywintypes: bool) -> dict:
    env_dir = tmp_path / "site"
    env_dir.mkdir()
    if with_pywintypes:
        (env_dir / "pywintypes.py").write_text(textwrap.dedent(STAND_IN))
    out = subprocess.run(
        [sys.executable, "-c", PROBE],
        capture_output=True,
        text=True,
        check=True,
        env={**__import__("os").environ, "PYTHONPATH": str(env_dir)},
        cwd=tmp_path,
    )
    return json.loads(out.stdout)


@pytest.mark.skipif(sys.platform == "win32", reason="the real pywintypes: tests/compat")
def test_with_pywintypes_our_error_is_a_pywintypes_error_with_pywin32s_args(tmp_path):
    got = probe(tmp_path, with_pywintypes=True)
    assert got["pywintypes"] is True
    assert got["is_pywintypes_error"] and got["is_oserror"]
    assert got["is_mmapfile_error"] and got["is_extension_error"]
    assert got["type"] == "mmapfile.error"
    # pywin32's args and attributes: the Windows code, the call, the text.
    assert got["args"] == [got["winerror"], got["funcname"], got["strerror"]]
    assert got["winerror"] == 2  # ERROR_FILE_NOT_FOUND, translated from ENOENT
    assert got["funcname"] == "open"
    assert got["strerror"]
    # OSError's fields are still right for OSError users.
    assert got["errno"] == errno.ENOENT


def test_without_pywintypes_the_error_is_as_before(tmp_path):
    got = probe(tmp_path, with_pywintypes=False)
    if got["pywintypes"]:
        pytest.skip("pywin32 is installed in this Python")
    assert got["type"] == "mmapfile._mmapfile.error" or got["type"].endswith(".error")
    assert got["is_oserror"] and got["is_mmapfile_error"]
    assert got["args"][:2] == [got["errno"], got["strerror"]]


def test_the_error_class_can_only_be_replaced_by_a_subclass_once():
    with pytest.raises(TypeError):
        mmapfile._mmapfile._use_error_class(ValueError)
