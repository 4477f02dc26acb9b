"""pywin32's ``mmapfile`` API on Linux, macOS and Windows, written in Rust.

``mmapfile.mmapfile(File, Name, MaximumSize=0, FileOffset=0, NumberOfBytesToMap=0)``
maps a file (``File``), a named block of shared memory (``Name`` and no ``File``)
or an unnamed block (neither). See ``_mmapfile.pyi`` for the full reference.
"""

from ._mmapfile import (
    ACCESS_COPY,
    ACCESS_DEFAULT,
    ACCESS_READ,
    ACCESS_WRITE,
    ALLOCATIONGRANULARITY,
    PAGESIZE,
    __version__,
    error,
    mmapfile,
)

__all__ = [
    "ACCESS_COPY",
    "ACCESS_DEFAULT",
    "ACCESS_READ",
    "ACCESS_WRITE",
    "ALLOCATIONGRANULARITY",
    "PAGESIZE",
    "__version__",
    "error",
    "mmapfile",
]
