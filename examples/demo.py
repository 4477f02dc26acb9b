"""A tour in two parts: two processes talking through a named block, and a
file mapped and read line by line.

Run with `make demo` (builds the module first) or `python examples/demo.py`.
"""

import os
import subprocess
import sys
import tempfile
import textwrap

import mmapfile

NAME = f"Local\\mmapfile-demo-{os.getpid()}"
SIZE = 4096


def exchange_messages() -> None:
    # The parent creates the block, writes a question and waits for the answer
    # that a child process writes into the same bytes.
    with_block = mmapfile.mmapfile(None, NAME, SIZE)
    question = b"ping from the parent\n"
    with_block.write(question)
    child = textwrap.dedent(
        f"""
        import mmapfile
        m = mmapfile.mmapfile(None, {NAME!r})      # open by name, at its size
        print("child  read:", m.readline())
        m.seek(2048)
        m.write(b"pong from the child\\n")
        m.close()
        """
    )
    subprocess.run([sys.executable, "-c", child], check=True)
    with_block.seek(2048)
    print("parent read:", with_block.readline())
    with_block.close()


def read_file_by_lines() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "poem.txt")
        with open(path, "wb") as f:
            f.write(b"one line\nanother line\nand a last one without newline")
        m = mmapfile.mmapfile(path, None)  # MaximumSize=0: exactly the file
        print(f"{path} is {m.size()} bytes; the view ends where the file ends")
        while line := m.readline():
            print("  line:", line)
        m.close()
        print("file size after mapping:", os.path.getsize(path), "(never padded)")


if __name__ == "__main__":
    exchange_messages()
    read_file_by_lines()
