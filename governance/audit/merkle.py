"""RFC 6962 / RFC 9162 Merkle tree hashing, inclusion and consistency proofs. Pure: no database, no I/O.

The tree over entries ``D[0:n]`` is defined recursively (RFC 9162 section 2.1.1):

    MTH({})        = SHA-256()
    MTH({d0})      = SHA-256(0x00 || d0)
    MTH(D[0:n])    = SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n]))   k = largest power of two < n

Every subtree that the definition ever splits off on the left is *perfect* (its size is a power of two) and
*aligned* (it starts at a multiple of its size). A ``NodeRef(level, idx)`` names such a subtree: the
``2**level`` leaves starting at ``idx * 2**level``. Storage keeps exactly these hashes (level 0 are the leaf
hashes), which is what makes appends and proofs O(log n):

- ``Frontier`` is the compact range of a tree of size n: the perfect subtrees in n's binary decomposition.
  Appending a leaf merges like a binary counter and reports the newly completed perfect subtrees to store.
- ``inclusion_plan`` / ``consistency_plan`` / ``range_nodes`` say which stored nodes a proof needs; the caller
  fetches them (one query) and ``assemble`` folds them into proof hashes.
- ``verify_inclusion`` / ``verify_consistency`` follow the verification algorithms of RFC 9162 sections
  2.1.3.2 and 2.1.4.2.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

HASH_SIZE = 32
LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
EMPTY_ROOT = hashlib.sha256(b"").digest()


class ProofError(ValueError):
    """A proof was requested for sizes or indices that do not describe one (e.g. index >= size)."""


def leaf_hash(data: bytes) -> bytes:
    """MTH of the one-entry tree: SHA-256(0x00 || data)."""
    return hashlib.sha256(LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Interior node: SHA-256(0x01 || left || right)."""
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def split_point(n: int) -> int:
    """The largest power of two strictly smaller than n (n >= 2): where RFC 6962 splits D[0:n]."""
    if n < 2:
        raise ProofError(f"cannot split a tree of size {n}")
    return 1 << ((n - 1).bit_length() - 1)


class NodeRef(NamedTuple):
    """The perfect subtree of ``2**level`` leaves that starts at leaf ``idx * 2**level``."""

    level: int
    idx: int

    @property
    def start(self) -> int:
        return self.idx << self.level

    @property
    def end(self) -> int:
        return (self.idx + 1) << self.level


# A subtree hash is the right fold of its perfect parts: H(p0, H(p1, ... H(p_{k-2}, p_{k-1}))).
Plan = list[NodeRef]


def range_nodes(start: int, end: int) -> Plan:
    """The perfect subtrees whose right fold is MTH(D[start:end]).

    ``start`` must be aligned the way every subtree of an RFC 6962 tree is: a multiple of the smallest power of
    two that is >= end - start. Parts come largest first, which is the RFC split order.
    """
    if not 0 <= start < end:
        raise ProofError(f"empty or negative range [{start}, {end})")
    size = end - start
    if start % (1 << (size - 1).bit_length()) != 0:
        raise ProofError(f"range [{start}, {end}) is not a subtree of an RFC 6962 tree")
    parts: Plan = []
    pos = start
    for level in range(size.bit_length() - 1, -1, -1):
        if size >> level & 1:
            parts.append(NodeRef(level, pos >> level))
            pos += 1 << level
    return parts


def fold(hashes: Sequence[bytes]) -> bytes:
    """Right fold of perfect-subtree hashes (largest first) into the hash of their union."""
    if not hashes:
        raise ProofError("nothing to fold")
    acc = hashes[-1]
    for h in reversed(hashes[:-1]):
        acc = node_hash(h, acc)
    return acc


def inclusion_plan(index: int, size: int) -> list[Plan]:
    """PATH(index, D[0:size]) as node plans, in the RFC's order (the sibling nearest the leaf first)."""
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is not in a tree of size {size}")
    ranges: list[tuple[int, int]] = []
    start, end = 0, size
    while end - start > 1:
        k = split_point(end - start)
        if index < start + k:
            ranges.append((start + k, end))
            end = start + k
        else:
            ranges.append((start, start + k))
            start += k
    return [range_nodes(a, b) for a, b in reversed(ranges)]


def consistency_plan(first: int, second: int) -> list[Plan]:
    """PROOF(first, D[0:second]) (RFC 9162 section 2.1.4.1) as node plans; empty when first is 0 or second."""
    if not 0 <= first <= second:
        raise ProofError(f"no consistency proof from size {first} to size {second}")
    if first == 0 or first == second:
        return []
    ranges: list[tuple[int, int]] = []
    # SUBPROOF(m, D[start:end], b), unrolled: the outer siblings collected on the way down, reversed at the end.
    m, start, end, complete = first, 0, second, True
    while True:
        n = end - start
        if m == n:
            if not complete:
                ranges.append((start, end))
            break
        k = split_point(n)
        if m <= k:
            ranges.append((start + k, end))
            end = start + k
        else:
            ranges.append((start, start + k))
            start += k
            m -= k
            complete = False
    return [range_nodes(a, b) for a, b in reversed(ranges)]


def nodes_of(plans: Iterable[Plan]) -> set[NodeRef]:
    """Every stored node that a list of plans reads."""
    return {ref for plan in plans for ref in plan}


def assemble(plans: Iterable[Plan], nodes: Mapping[NodeRef, bytes]) -> list[bytes]:
    """Fold each plan with the fetched node hashes into the proof's hashes."""
    try:
        return [fold([nodes[ref] for ref in plan]) for plan in plans]
    except KeyError as exc:
        raise ProofError(f"node {exc.args[0]} is missing from storage") from exc


# -- frontier (compact range of [0, size)) --------------------------------------------------------------------


class Frontier:
    """The perfect subtrees covering D[0:size], largest first: what append and the root need, nothing more."""

    __slots__ = ("hashes", "size")

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        if len(hashes) != size.bit_count():
            raise ProofError(f"a frontier of size {size} has {size.bit_count()} hashes, not {len(hashes)}")
        self.size = size
        self.hashes = list(hashes)

    def refs(self) -> Plan:
        return range_nodes(0, self.size) if self.size else []

    def append(self, leaf: bytes) -> list[tuple[NodeRef, bytes]]:
        """Add one leaf hash; return the new perfect subtrees (the leaf first) for storage."""
        created = [(NodeRef(0, self.size), leaf)]
        acc, level, index = leaf, 0, self.size
        while index & 1:
            acc = node_hash(self.hashes.pop(), acc)
            level, index = level + 1, index >> 1
            created.append((NodeRef(level, index), acc))
        self.hashes.append(acc)
        self.size += 1
        return created

    def add(self, leaf: bytes) -> None:
        """``append`` without reporting the new nodes: the verifier's fast path."""
        acc, index, hashes = leaf, self.size, self.hashes
        while index & 1:
            acc = hashlib.sha256(NODE_PREFIX + hashes.pop() + acc).digest()
            index >>= 1
        hashes.append(acc)
        self.size += 1

    def add_subtree(self, level: int, subtree: bytes) -> None:
        """Add the hash of a perfect subtree of ``2**level`` leaves; the size must be a multiple of that."""
        if self.size & ((1 << level) - 1):
            raise ProofError(f"a subtree of 2**{level} leaves cannot start at leaf {self.size}")
        acc, index, hashes = subtree, self.size >> level, self.hashes
        while index & 1:
            acc = hashlib.sha256(NODE_PREFIX + hashes.pop() + acc).digest()
            index >>= 1
        hashes.append(acc)
        self.size += 1 << level

    def extend(self, leaves: Sequence[bytes], chunk_level: int = 12) -> None:
        """Add many leaf hashes: whole aligned chunks of ``2**chunk_level`` are hashed level by level (much
        faster in Python than leaf by leaf), the rest leaf by leaf."""
        chunk = 1 << chunk_level
        i, n = 0, len(leaves)
        while i < n and self.size & (chunk - 1):
            self.add(leaves[i])
            i += 1
        while n - i >= chunk:
            self.add_subtree(chunk_level, perfect_root(leaves[i : i + chunk]))
            i += chunk
        for leaf in leaves[i:]:
            self.add(leaf)

    def root(self) -> bytes:
        return fold(self.hashes) if self.hashes else EMPTY_ROOT

    def to_bytes(self) -> bytes:
        return b"".join(self.hashes)

    @classmethod
    def from_bytes(cls, size: int, blob: bytes) -> Frontier:
        if len(blob) != HASH_SIZE * size.bit_count():
            raise ProofError(f"stored frontier for size {size} has {len(blob)} bytes")
        return cls(size, [blob[i : i + HASH_SIZE] for i in range(0, len(blob), HASH_SIZE)])


def perfect_root(leaves: Sequence[bytes]) -> bytes:
    """The root of a perfect tree (the number of leaf hashes is a power of two), one level at a time."""
    if not leaves or len(leaves) & (len(leaves) - 1):
        raise ProofError(f"{len(leaves)} leaves do not make a perfect tree")
    sha256, level = hashlib.sha256, list(leaves)
    while len(level) > 1:
        pairs = iter(level)
        level = [
            sha256(NODE_PREFIX + left + right).digest() for left, right in zip(pairs, pairs, strict=True)
        ]
    return level[0]


def root_from_leaf_hashes(leaves: Iterable[bytes]) -> bytes:
    """The tree head over leaf hashes, in one pass with O(log n) memory."""
    frontier = Frontier()
    for leaf in leaves:
        frontier.add(leaf)
    return frontier.root()


class MemoryTree:
    """An in-memory log with the same storage layout as the database: every perfect subtree hash by level."""

    def __init__(self, leaves: Iterable[bytes] = ()) -> None:
        self.levels: list[list[bytes]] = []
        self.frontier = Frontier()
        for leaf in leaves:
            self.append(leaf)

    @property
    def size(self) -> int:
        return self.frontier.size

    def append(self, leaf: bytes) -> None:
        for ref, h in self.frontier.append(leaf):
            if ref.level == len(self.levels):
                self.levels.append([])
            self.levels[ref.level].append(h)

    def node(self, ref: NodeRef) -> bytes:
        return self.levels[ref.level][ref.idx]

    def _resolve(self, plans: list[Plan]) -> list[bytes]:
        return assemble(plans, {ref: self.node(ref) for ref in nodes_of(plans)})

    def root(self, size: int | None = None) -> bytes:
        size = self.size if size is None else size
        if not 0 <= size <= self.size:
            raise ProofError(f"size {size} is beyond the log's {self.size} entries")
        return self._resolve([range_nodes(0, size)])[0] if size else EMPTY_ROOT

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        size = self.size if size is None else size
        if size > self.size:
            raise ProofError(f"size {size} is beyond the log's {self.size} entries")
        return self._resolve(inclusion_plan(index, size))

    def consistency_proof(self, first: int, second: int | None = None) -> list[bytes]:
        second = self.size if second is None else second
        if second > self.size:
            raise ProofError(f"size {second} is beyond the log's {self.size} entries")
        return self._resolve(consistency_plan(first, second))


# -- verification (RFC 9162 sections 2.1.3.2 and 2.1.4.2) -----------------------------------------------------


def _strip_right_edge(fn: int, sn: int) -> tuple[int, int]:
    """Shift both right until fn's lowest bit is set or fn is 0 (the tree's right edge has no sibling)."""
    while fn and not fn & 1:
        fn >>= 1
        sn >>= 1
    return fn, sn


def root_from_inclusion_proof(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """The root that ``proof`` implies for ``leaf`` at ``index``; raises ProofError for a malformed proof."""
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is not in a tree of size {size}")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if len(p) != HASH_SIZE:
            raise ProofError("proof hash has the wrong length")
        if sn == 0:
            raise ProofError("inclusion proof is too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            fn, sn = _strip_right_edge(fn, sn)
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("inclusion proof is too short")
    return r


def verify_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes) -> bool:
    """True when ``proof`` shows the leaf hash at ``index`` is in the tree of ``size`` with ``root``."""
    try:
        return root_from_inclusion_proof(index, size, leaf, proof) == root
    except ProofError:
        return False


def verify_consistency(
    first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]
) -> bool:
    """True when ``proof`` shows the tree of ``first`` entries is a prefix of the tree of ``second`` entries."""
    if not 0 <= first <= second:
        return False
    if first == second:
        return not proof and first_root == second_root
    if first == 0:
        return not proof and first_root == EMPTY_ROOT
    if not proof or any(len(p) != HASH_SIZE for p in proof):
        return False
    path = list(proof)
    if first & (first - 1) == 0:  # a power of two: the old root is itself a node of the new tree
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            fn, sn = _strip_right_edge(fn, sn)
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == first_root and sr == second_root
