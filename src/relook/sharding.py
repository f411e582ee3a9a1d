"""Shards: one deterministic partition of sorted ids that every stage (extract, rerank, evaluate) uses.

``--shard i/N`` (0 <= i < N) gives process i every N-th id of the sorted list, from position i
(``shard_ids``): disjoint over i, together all ids, independent of the order ids came in, so N processes
started by anything (a bash loop, a SLURM array, torchrun, Ray, Spark) split the work without talking to
each other. Each writes its own part next to the stage's output, ``<output>.part{i}-of-{N}``
(``part_path``), resumable like the output itself; ``relook merge`` (``relook.merge_parts``) then checks
that the N parts hold every id exactly once and writes the output a single process would have written.

This module holds the partition, the part names and the checks; the stages read and write the files.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from relook.errors import ConfigError, DataError

_PART = re.compile(r"\.part(\d+)-of-(\d+)$")


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` (``0 <= index < count``)."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ConfigError(f"--shard {self.index}/{self.count}: need 0 <= i < N (e.g. 0/3, 1/3, 2/3)")

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str | None) -> Shard | None:
    """``"i/N"`` -> ``Shard(i, N)``; None or ``""`` -> None; anything else a one-line ``ConfigError``."""
    if text is None or str(text).strip() == "":
        return None
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
    if not m:
        raise ConfigError(f"--shard {text!r}: expected i/N with 0 <= i < N, e.g. 0/3")
    return Shard(int(m.group(1)), int(m.group(2)))


def shard_ids(ids: Iterable[str], shard: Shard) -> list[str]:
    """Shard ``shard``'s share of ``ids``: every ``count``-th id of the sorted list, from ``index``."""
    return sorted(ids)[shard.index :: shard.count]


def shard_items(items: Sequence, shard: Shard) -> list:
    """``shard_ids`` for tuples whose first element is the id (e.g. ``(image id, path, box)``)."""
    return sorted(items, key=lambda it: it[0])[shard.index :: shard.count]


def part_path(output: str | Path, shard: Shard) -> Path:
    """The part of ``output`` that shard ``shard`` writes: ``gallery.h5`` -> ``gallery.h5.part1-of-3``."""
    output = Path(output)
    return output.with_name(f"{output.name}.part{shard.index}-of-{shard.count}")


def find_parts(output: str | Path, stage: str) -> list[Path]:
    """The parts of ``output`` on disk, in shard order; [] when there are none.

    ``DataError`` (naming ``output`` and the ``relook STAGE --shard`` runs still to do) when parts of more
    than one N lie there, or when some of the N are missing.
    """
    output = Path(output)
    found: dict[int, dict[int, Path]] = {}
    for p in output.parent.glob(f"{output.name}.part*-of-*"):
        m = _PART.search(p.name)
        if m and p.name[: m.start()] == output.name:
            found.setdefault(int(m.group(2)), {})[int(m.group(1))] = p
    if not found:
        return []
    if len(found) > 1:
        raise DataError(
            f"{output}: parts of {sorted(found)} shards lie beside it; delete those of the runs you abandoned"
        )
    ((count, parts),) = found.items()
    missing = [i for i in range(count) if i not in parts]
    if missing:
        raise DataError(
            f"{output}: {len(missing)} of {count} parts missing ({', '.join(f'{i}/{count}' for i in missing[:5])}); "
            f"run `relook {stage} --shard {missing[0]}/{count}` (and the others) before merging"
        )
    return [parts[i] for i in range(count)]


def shard_of(part: str | Path) -> Shard:
    """The shard a part file belongs to, read from its name."""
    m = _PART.search(Path(part).name)
    if not m:
        raise DataError(f"{part}: not a shard part (its name must end in .partI-of-N)")
    return Shard(int(m.group(1)), int(m.group(2)))


def check_partition(parts: dict[Path, Sequence[str]], ids: Sequence[str], done: Iterable[str] = ()) -> None:
    """Each part holds only ids of its own shard (hence every id at most once) and, with ``done`` (ids the
    output already held), together they hold every one of ``ids``; else a one-line ``DataError``."""
    wanted = set(ids)
    seen: set[str] = set(done)
    for part, held in parts.items():
        own = set(shard_ids(wanted, shard_of(part)))
        held = list(held)
        stray = [i for i in held if i not in own]
        if stray:
            why = (
                "not an id of this stage"
                if stray[0] not in wanted
                else f"belongs to another shard than {shard_of(part)}"
            )
            raise DataError(f"{part}: holds {len(stray)} id(s) outside its share (e.g. {stray[0]!r}: {why})")
        if len(set(held)) != len(held):
            dup = Counter(held).most_common(1)[0][0]
            raise DataError(f"{part}: id {dup!r} appears more than once")
        seen.update(held)
    missing = [i for i in ids if i not in seen]
    if missing:
        raise DataError(
            f"the parts lack {len(missing)} of {len(wanted)} ids (e.g. {missing[0]!r}); rerun the shard "
            "that owns it (its part is resumable), then merge again"
        )
