"""Training on several sources at once (paper §3.4, data augmentation): `config.data.sources` names shard folders
with sampling weights, and the training stream draws each position from one of them (ARCHITECTURE.md, "Data flow").

    config.data.sources = "affwild2=1,synthetic:affectnet=0.5,/data/bp4d_shards=0.25"
    config.data.sources = "affwild2,/data/pseudo_rules"

Each entry is WHERE=WEIGHT, or WHERE alone in every entry: then each source weighs its number of records (the
sources concatenated). WHERE is `affwild2` (this config's own training records: Aff-Wild2's train split or a
fold's), `synthetic:<name>` (a synthetic external set rendered and converted on first use:
pasn_jax/data/synthetic/prepare.py, EXTERNAL_SETS), or a folder of converted shards (its `train` split). "" trains on
`affwild2` alone.

Deterministic, with no state to save: positions come in blocks of BLOCK; a block holds each source's quota (its
weight's share of BLOCK, largest remainders) in an order drawn from (seed, block), so position q's source and its
place r in that source's own stream are a pure function of (seed, q). A source's stream visits its records in a
fresh permutation per pass, as a single source's does (pasn_jax/data/train_stream.py). Resuming at step s therefore
continues the same mixture on any number of processes.
"""

import dataclasses
import functools

import numpy as np

BLOCK = 1000  # positions per block: weights resolve to 1/BLOCK
OWN = "affwild2"
SYNTHETIC_PREFIX = "synthetic:"


class MixtureError(ValueError):
    """A `data.sources` entry that cannot be read; the message names it."""


@dataclasses.dataclass(frozen=True)
class Entry:
    where: str  # OWN, "synthetic:<name>" or a shard folder
    weight: float | None  # None: its number of records


def parse_sources(text: str) -> list[Entry]:
    """`data.sources` -> entries (weight None where every entry omits it); raises MixtureError naming a malformed
    entry."""
    entries = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        where, sep, weight = item.rpartition("=")
        if not sep:
            entries.append(Entry(item, None))
            continue
        try:
            value = float(weight)
        except ValueError:
            value = float("nan")
        if not where or not value > 0 or not np.isfinite(value):
            raise MixtureError(f"config.data.sources: entry {item!r}: expected WHERE=WEIGHT with a weight > 0, or "
                               f"WHERE alone (WHERE: {OWN}, {SYNTHETIC_PREFIX}<name> or a shard folder)")
        entries.append(Entry(where.strip(), value))
    names = [e.where for e in entries]
    if len(set(names)) != len(names):
        raise MixtureError(f"config.data.sources: a source is listed twice in {text!r}")
    if len({e.weight is None for e in entries}) > 1:
        raise MixtureError(f"config.data.sources: {text!r}: give every entry a weight, or none (then each source "
                           "weighs its number of records)")
    return entries


def quotas(weights) -> np.ndarray:
    """Positions per block of each source: weight shares of BLOCK by largest remainder; each at least 1."""
    share = np.asarray(weights, np.float64) / np.sum(weights) * BLOCK
    quota = np.floor(share).astype(np.int64)
    quota[np.argsort(-(share - quota), kind="stable")[:BLOCK - quota.sum()]] += 1
    if np.any(quota == 0):
        raise MixtureError(f"config.data.sources: weights {list(weights)} give a source less than 1/{BLOCK} of the "
                           "positions; raise its weight")
    return quota


class Mixture:
    """Random-access sources with weights -> the record at each stream position (see the module docstring)."""

    def __init__(self, sources, weights, names=None):
        if len(sources) != len(weights) or not sources:
            raise MixtureError("a mixture needs one weight per source, and at least one source")
        for i, source in enumerate(sources):
            if len(source) == 0:
                raise MixtureError(f"config.data.sources: {names[i] if names else i}: no records to train on")
        self.sources, self.names = list(sources), list(names or range(len(sources)))
        self.quota = quotas(weights)
        self._pattern = np.repeat(np.arange(len(sources)), self.quota)

    def __repr__(self) -> str:
        parts = ", ".join(f"{n}: {len(s)} records, {q / BLOCK:.3f} of positions"
                          for n, s, q in zip(self.names, self.sources, self.quota))
        return f"Mixture({parts})"

    @functools.lru_cache(maxsize=4)
    def _block(self, seed: int, block: int) -> tuple[np.ndarray, np.ndarray]:
        """(source of each position of the block, its place among that source's positions in the block)."""
        order = np.random.default_rng([seed, 1, block]).permutation(self._pattern)
        place = np.zeros(BLOCK, np.int64)
        for k in range(len(self.sources)):
            mine = order == k
            place[mine] = np.arange(int(self.quota[k]))
        return order, place

    def locate(self, seed: int, position: int) -> tuple[int, int]:
        """(source k, index of the record in source k) at a stream position."""
        block, offset = divmod(position, BLOCK)
        order, place = self._block(seed, block)
        k = int(order[offset])
        r = block * int(self.quota[k]) + int(place[offset])  # position in source k's own stream
        size = len(self.sources[k])
        return k, int(_permutation(seed, k, r // size, size)[r % size])

    def record(self, seed: int, position: int):
        k, index = self.locate(seed, position)
        return self.sources[k][index]


@functools.lru_cache(maxsize=8)
def _permutation(seed: int, source: int, epoch: int, size: int) -> np.ndarray:
    return np.random.default_rng([seed, 2, source, epoch]).permutation(size)
