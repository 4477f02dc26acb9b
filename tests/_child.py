"""Runs test code in a child Python process, so that a crash (a signal such
as SIGBUS or SIGSEGV) fails the test that caused it instead of killing the
test runner."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap


def run_child(code: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Runs `code` (dedented) with this interpreter and returns the result."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def describe(proc: subprocess.CompletedProcess[str]) -> str:
    """A readable account of how a child ended, for assertion messages."""
    how = f"exit code {proc.returncode}"
    if proc.returncode < 0:
        how = f"killed by {signal.Signals(-proc.returncode).name}"
    return f"child {how}\n--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"


def assert_child_ok(code: str, timeout: float = 120) -> str:
    """Runs `code` in a child, asserts it exited 0, and returns its stdout."""
    proc = run_child(code, timeout)
    assert proc.returncode == 0, describe(proc)
    return proc.stdout
