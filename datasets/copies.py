"""Keep a set number of copies of each source picture: augmented exports hold several per picture.

Roboflow exports augment each source picture into N files named ``<source>_jpg.rf.<hash>.jpg``; a recipe's
`group_pattern` already maps them to one group. Training on every copy weighs those pictures N times and
spends N times the epoch on them; `copies_per_group: 1` keeps the first copy of each group in each split, in
the order the source yields them (`YoloFolderSource` yields by file name, so every build keeps the same one),
and reports every other copy as an `EXTRA_COPY` drop.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator

from citywatch.datasets.sample import Sample
from citywatch.datasets.validate import Drop, DropReason

__all__ = ["keep_copies"]


def keep_copies(samples: Iterable[Sample], copies: int, report: Callable[[Drop], None]) -> Iterator[Sample]:
    """The samples, less every copy past the first `copies` of its (group, split); streamed, nothing buffered."""
    if copies < 1:
        raise ValueError(f"copies must be >= 1; got {copies}")
    kept: Counter[tuple[str, str | None]] = Counter()
    for sample in samples:
        key = (sample.group, sample.split)
        if kept[key] >= copies:
            report(
                Drop(sample.source, sample.item, DropReason.EXTRA_COPY, f"group {sample.group!r} already has {copies}")
            )
            continue
        kept[key] += 1
        yield sample
