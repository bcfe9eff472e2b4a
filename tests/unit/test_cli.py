from __future__ import annotations

import os
from pathlib import Path

from daemon.cli import _expand


def test_a_folder_given_to_ingest_is_walked_leaving_out_what_the_inbox_ignores(
    tmp_path: Path,
) -> None:
    top = tmp_path / "drop"
    for name in (
        "a.txt",
        "sub/b.txt",
        "sub/deeper/c.txt",
        ".hidden.txt",
        "d.txt.tmp",
        ".git/objects/x.txt",
        ".venv/lib/y.txt",
        "sub/.cache/z.txt",
        "sub/e.txt.part",
    ):
        (top / name).parent.mkdir(parents=True, exist_ok=True)
        (top / name).write_text("x", encoding="utf-8")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "w.txt").write_text("x", encoding="utf-8")
    os.symlink(tmp_path / "elsewhere", top / "link")  # a folder link is not followed

    found = list(_expand((top,)))
    assert found == [top / "a.txt", top / "sub/b.txt", top / "sub/deeper/c.txt"]
    # a file or folder named on the command line is taken as given
    assert list(_expand((top / ".hidden.txt", top / ".git"))) == [
        top / ".hidden.txt",
        top / ".git/objects/x.txt",
    ]
