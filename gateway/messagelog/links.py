"""How a set of containers hangs together: runs linked by `prev_hash`, and the gaps between them.

Each container's record.json holds its record hash and the hash of the record before it
(record.py: `record_hash = SHA-256(prev_hash || content_digest)`), so containers handed over
together can be put in chain order without trusting file names, and a record missing from the
middle shows as two runs that do not meet. What no link can show: records missing before the
first container given or after the last (the signed log heads are for that), and whether two
runs of one gateway are two nodes' chains or one chain with a gap: give `--allow-gaps` for a
deliberate selection or several nodes' containers. Sans-IO: values in, a report out.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from gateway.messagelog.record import GENESIS_HASH


@dataclass(frozen=True)
class ChainMember:
    """One verified container, as linking needs it."""

    name: str
    gateway: str
    logged_at: str
    prev_hash: bytes
    record_hash: bytes


@dataclass(frozen=True)
class Gap:
    """Between two runs of one gateway: `after` ends one, `before` starts the next; the record(s)
    between them (at least the one `before.prev_hash` names) were not given."""

    after: ChainMember
    before: ChainMember


@dataclass(frozen=True)
class ChainLinks:
    runs: tuple[tuple[ChainMember, ...], ...]  # each in chain order; runs by gateway, then time
    gaps: tuple[Gap, ...]
    forks: tuple[str, ...]  # two different records claiming one predecessor: a forged chain
    duplicates: tuple[str, ...]  # the same record given twice (harmless; said once)

    @property
    def linked(self) -> bool:
        return not self.forks and not self.gaps


def link(members: Iterable[ChainMember]) -> ChainLinks:
    """Put containers in chain order by their hashes; find forks and gaps."""
    by_hash: dict[bytes, ChainMember] = {}
    duplicates: list[str] = []
    for member in members:
        if member.record_hash in by_hash:
            duplicates.append(f"{member.name} is the same record as {by_hash[member.record_hash].name}")
            continue
        by_hash[member.record_hash] = member
    successors: dict[bytes, list[ChainMember]] = {}
    for member in by_hash.values():
        successors.setdefault(member.prev_hash, []).append(member)
    forks = [
        f"{' and '.join(sorted(m.name for m in found))} both follow record {prev.hex()}"
        for prev, found in successors.items()
        if len(found) > 1 and prev != GENESIS_HASH
    ]
    starts = [member for member in by_hash.values() if member.prev_hash not in by_hash]
    runs = [_follow(start, successors) for start in starts]
    runs.sort(key=lambda run: (run[0].gateway, run[0].logged_at, run[0].name))
    gaps = [
        Gap(first[-1], second[0])
        for first, second in itertools.pairwise(runs)
        if first[-1].gateway == second[0].gateway
    ]
    return ChainLinks(tuple(runs), tuple(gaps), tuple(sorted(forks)), tuple(duplicates))


def _follow(start: ChainMember, successors: dict[bytes, list[ChainMember]]) -> tuple[ChainMember, ...]:
    run = [start]
    while next_ones := successors.get(run[-1].record_hash):
        run.append(min(next_ones, key=lambda m: m.name))  # a fork is reported; follow one branch
    return tuple(run)


def describe(links: ChainLinks) -> Sequence[str]:
    """Lines for people: each run, each gap, each fork."""
    lines = []
    for number, run in enumerate(links.runs, start=1):
        origin = (
            "from the chain's first record"
            if run[0].prev_hash == GENESIS_HASH
            else "after a record not given"
        )
        span = f"{run[0].name} .. {run[-1].name}"
        lines.append(f"run {number}: {run[0].gateway}, {len(run)} containers, {span} ({origin})")
    lines += [
        f"gap: {gap.before.name} follows record {gap.before.prev_hash.hex()[:16]}..., which is not given "
        f"(the run before it ends at {gap.after.name})"
        for gap in links.gaps
    ]
    lines += [f"fork: {fork}" for fork in links.forks]
    lines += [f"note: {duplicate}" for duplicate in links.duplicates]
    return lines
