"""The Windows rows of the threat model (docs/security.md) that Wine models:
which namespace a name reaches. Another user, the default DACL and
`SeCreateGlobalPrivilege` are not modelled by Wine, which runs everything as
one user and does not enforce DACLs; docs/security.md says what is not
defended there."""

from __future__ import annotations

import mmapfile
import pytest
from conftest import WINDOWS

pytestmark = pytest.mark.skipif(not WINDOWS, reason="Windows object namespaces")

# ERROR_ACCESS_DENIED: a user without SeCreateGlobalPrivilege may not create
# a Global\ name (Wine lets every process).
_ACCESS_DENIED = 5


def _create_global(name: str, size: int):
    try:
        return mmapfile.mmapfile(None, f"Global\\{name}", size)
    except mmapfile.error as exc:
        if exc.winerror == _ACCESS_DENIED:
            pytest.skip("this user may not create Global\\ names")
        raise


def test_a_session_name_is_not_reached_through_the_global_namespace(block_name):
    # A name goes to Windows unchanged, prefix included (as with pywin32):
    # a block of this session (Local\, or no prefix) is another section than
    # the machine-wide Global\ one of the same name, both ways.
    local = mmapfile.mmapfile(None, f"Local\\{block_name}", 4096)
    local.write(b"session")
    with pytest.raises(mmapfile.error):
        mmapfile.mmapfile(None, f"Global\\{block_name}", 0)
    machine = _create_global(block_name, 4096)
    assert machine.created and machine.read(7) == bytes(7)
    machine.write(b"machine")
    again = mmapfile.mmapfile(None, block_name, 0)
    assert again.read(7) == b"session"
    again.close()
    machine.close()
    local.close()
