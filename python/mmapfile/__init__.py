"""pywin32's ``mmapfile`` API on Linux, macOS and Windows, written in Rust.

``mmapfile.mmapfile(File, Name, MaximumSize=0, FileOffset=0, NumberOfBytesToMap=0)``
maps a file (``File``), a named block of shared memory (``Name`` and no ``File``)
or an unnamed block (neither). See ``_mmapfile.pyi`` for the full reference.
"""

import importlib

# Every public name of the compiled core, which lists them in its `__all__`.
# The madvise() options (MADV_*) among them are those the core offers on
# this OS (`mmapfile::advice_values()`), so no list of them is written here;
# type checkers read the same names from _mmapfile.pyi.
from ._mmapfile import *  # noqa: F403
from ._mmapfile import __all__ as __all__
from ._mmapfile import error


def _pywin32_compatible_error():
    """Where pywin32's ``pywintypes`` is importable: a subclass of the
    extension's ``error`` and of ``pywintypes.error``, which the extension
    then raises with pywin32's ``args`` ``(winerror, funcname, strerror)``,
    so that code written for pywin32 (``except pywintypes.error``) catches
    ours. None without pywin32. docs/migrating.md."""
    try:
        pywintypes = importlib.import_module("pywintypes")
    except ImportError:
        return None
    base = getattr(pywintypes, "error", None)
    if not (isinstance(base, type) and issubclass(base, Exception)):
        return None
    doc = (
        "An operating-system call failed: an OSError (errno, strerror, winerror, "
        "funcname) that is also a pywintypes.error, with pywin32's args "
        "(winerror, funcname, strerror)."
    )
    cls = type("error", (error, base), {"__module__": "mmapfile", "__doc__": doc})
    from ._mmapfile import _use_error_class

    _use_error_class(cls)
    return cls


# Replaces the name, not the type the stubs give it: still an OSError.
globals()["error"] = _pywin32_compatible_error() or error
del _pywin32_compatible_error
