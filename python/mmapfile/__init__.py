"""pywin32's ``mmapfile`` API on Linux, macOS and Windows, written in Rust.

``mmapfile.mmapfile(File, Name, MaximumSize=0, FileOffset=0, NumberOfBytesToMap=0)``
maps a file (``File``), a named block of shared memory (``Name`` and no ``File``)
or an unnamed block (neither). See ``_mmapfile.pyi`` for the full reference.
"""

# Every public name of the compiled core, which lists them in its `__all__`.
# The madvise() options (MADV_*) among them are those the core offers on
# this OS (`mmapfile::advice_values()`), so no list of them is written here;
# type checkers read the same names from _mmapfile.pyi.
from ._mmapfile import *  # noqa: F403
from ._mmapfile import __all__ as __all__
