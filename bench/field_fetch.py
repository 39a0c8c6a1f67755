"""Bring the field set's outside pictures to var/field/ (git-ignored), checked against labels.csv's sha256.

    python bench/field_fetch.py --repo GIT_DIR      # a clone or snapshot of dfayzur/garbage-object-detection

The pictures are not committed: `bench/field/SOURCES.md` says where each one comes from and under which
licence. GIT_DIR is any git directory (bare or not) holding commit COMMIT below, e.g. one made with
`git clone https://github.com/dfayzur/garbage-object-detection`. Each picture is read with
`git show COMMIT:PATH` and written to `var/field/amsterdam/<file name>`; a picture whose sha256 differs from
the label file's is an error. Video frames are not copied: `bench/field_eval.py` reads them from
`../shared/video` where they lie.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LABELS = REPO / "bench" / "field" / "labels.csv"
FIELD_DIR = REPO / "var" / "field"
COMMIT = "5d72cd2c8957a8ae0a1cde91e59d27213596a113"
"""dfayzur/garbage-object-detection (a copy of maartensukel/garbage-object-detection), MIT."""


def fetch(git_dir: Path, out: Path = FIELD_DIR) -> int:
    """Write every 'amsterdam' picture of labels.csv under out/amsterdam; returns how many were written."""
    target = out / "amsterdam"
    target.mkdir(parents=True, exist_ok=True)
    written = 0
    with LABELS.open(encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row["source"] != "amsterdam":
                continue
            data = subprocess.run(
                ["git", f"--git-dir={git_dir}", "show", f"{COMMIT}:{row['item']}"], check=True, capture_output=True
            ).stdout
            digest = hashlib.sha256(data).hexdigest()
            if digest != row["sha256"]:
                raise ValueError(f"{row['id']} ({row['item']}): sha256 {digest} is not the labelled {row['sha256']}")
            (target / Path(row["item"]).name).write_bytes(data)
            written += 1
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", type=Path, required=True, help="git directory holding commit " + COMMIT)
    parser.add_argument("--out", type=Path, default=FIELD_DIR)
    args = parser.parse_args()
    git_dir = args.repo / ".git" if (args.repo / ".git").is_dir() else args.repo
    print(f"{fetch(git_dir, args.out)} pictures written to {args.out / 'amsterdam'}")


if __name__ == "__main__":
    main()
