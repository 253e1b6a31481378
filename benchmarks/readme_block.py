"""Rewrite one generated block of the README, so every table there is written by the script that
measured it:

    python benchmarks/readme_block.py README.md demo docs/demo_table.md

The block is the text between ``<!-- NAME:begin -->`` and ``<!-- NAME:end -->``; the markers must exist.
"""
from __future__ import annotations

import sys
from pathlib import Path


def replace_block(readme: Path, name: str, text: str) -> None:
    """Replace the body of block ``name`` in ``readme`` with ``text``."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    doc = readme.read_text()
    if doc.count(begin) != 1 or doc.count(end) != 1:
        raise SystemExit(f"{readme} needs exactly one {begin} ... {end} block")
    head, rest = doc.split(begin)
    _, tail = rest.split(end)
    readme.write_text(f"{head}{begin}\n{text.strip()}\n{end}{tail}")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    replace_block(Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]).read_text())
