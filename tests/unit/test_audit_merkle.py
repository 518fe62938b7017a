"""RFC 6962 / 9162 Merkle tree: known answers, the RFC's example tree, and properties of every proof."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from governance.audit import merkle

# -- a reference implementation written straight from the RFC's recursive definitions -------------------------


def ref_mth(entries: list[bytes]) -> bytes:
    n = len(entries)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + entries[0]).digest()
    k = 1
    while k * 2 < n:
        k *= 2
    return hashlib.sha256(b"\x01" + ref_mth(entries[:k]) + ref_mth(entries[k:])).digest()


def ref_path(m: int, entries: list[bytes]) -> list[bytes]:
    n = len(entries)
    if n == 1:
        return []
    k = 1
    while k * 2 < n:
        k *= 2
    if m < k:
        return [*ref_path(m, entries[:k]), ref_mth(entries[k:])]
    return [*ref_path(m - k, entries[k:]), ref_mth(entries[:k])]


def ref_subproof(m: int, entries: list[bytes], complete: bool) -> list[bytes]:
    n = len(entries)
    if m == n:
        return [] if complete else [ref_mth(entries)]
    k = 1
    while k * 2 < n:
        k *= 2
    if m <= k:
        return [*ref_subproof(m, entries[:k], complete), ref_mth(entries[k:])]
    return [*ref_subproof(m - k, entries[k:], False), ref_mth(entries[:k])]


def ref_proof(m: int, entries: list[bytes]) -> list[bytes]:
    return ref_subproof(m, entries, True)


# The inputs of the CT / transparency-dev reference trees (RFC 6962 test data, sizes 0..8).
LEAVES = [
    bytes.fromhex(h)
    for h in [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ]
]
# Roots of the first n of those leaves, as published with the reference trees.
KNOWN_ROOTS = {
    0: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    1: "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    2: "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    3: "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    4: "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    5: "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    6: "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    7: "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    8: "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
}


def tree_of(entries: list[bytes]) -> merkle.MemoryTree:
    return merkle.MemoryTree(merkle.leaf_hash(e) for e in entries)


@pytest.mark.parametrize("size", range(9))
def test_known_roots_of_the_reference_trees(size: int) -> None:
    assert ref_mth(LEAVES[:size]).hex() == KNOWN_ROOTS[size]
    assert tree_of(LEAVES[:size]).root().hex() == KNOWN_ROOTS[size]
    assert merkle.root_from_leaf_hashes(merkle.leaf_hash(e) for e in LEAVES[:size]).hex() == KNOWN_ROOTS[size]


@pytest.mark.parametrize("size", range(1, 9))
def test_reference_tree_proofs_match_the_definitions_and_verify(size: int) -> None:
    tree = tree_of(LEAVES[:size])
    root = tree.root()
    for index in range(size):
        proof = tree.inclusion_proof(index)
        assert proof == ref_path(index, LEAVES[:size])
        assert merkle.verify_inclusion(index, size, merkle.leaf_hash(LEAVES[index]), proof, root)
    for first in range(1, size + 1):
        proof = tree.consistency_proof(first)
        assert proof == ref_proof(first, LEAVES[:size])
        assert merkle.verify_consistency(first, size, tree.root(first), root, proof)


def test_the_rfc_example_tree_of_seven_leaves() -> None:
    """RFC 6962 section 2.1.3: the figure's nodes a..l and the proofs the RFC lists for them."""
    d = [bytes([i]) * (i + 1) for i in range(7)]
    a, b, c, dd, e, f = (merkle.leaf_hash(x) for x in d[:6])
    j = merkle.leaf_hash(d[6])
    g, h, i = merkle.node_hash(a, b), merkle.node_hash(c, dd), merkle.node_hash(e, f)
    k, l_ = merkle.node_hash(g, h), merkle.node_hash(i, j)
    root = merkle.node_hash(k, l_)
    tree = tree_of(d)
    assert tree.root() == root
    assert tree.inclusion_proof(0) == [b, h, l_]
    assert tree.inclusion_proof(3) == [c, g, l_]
    assert tree.inclusion_proof(4) == [f, j, k]
    assert tree.inclusion_proof(6) == [i, k]
    # hash0 (3 leaves), hash1 (4 leaves), hash2 (6 leaves) against hash (7 leaves)
    assert tree.consistency_proof(3) == [c, dd, g, l_]
    assert tree.consistency_proof(4) == [l_]
    assert tree.consistency_proof(6) == [i, j, k]
    assert tree.root(3) == merkle.node_hash(g, c)
    assert merkle.verify_consistency(3, 7, tree.root(3), root, [c, dd, g, l_])


def test_trivial_cases() -> None:
    tree = tree_of(LEAVES[:5])
    assert tree.consistency_proof(0) == []
    assert tree.consistency_proof(5) == []
    assert merkle.verify_consistency(0, 5, merkle.EMPTY_ROOT, tree.root(), [])
    assert merkle.verify_consistency(5, 5, tree.root(), tree.root(), [])
    assert not merkle.verify_consistency(5, 5, tree.root(), tree.root(), [tree.root()])
    assert not merkle.verify_consistency(3, 5, tree.root(3), tree.root(), [])
    assert merkle.verify_inclusion(0, 1, merkle.leaf_hash(b"x"), [], merkle.leaf_hash(b"x"))
    assert not merkle.verify_inclusion(1, 1, merkle.leaf_hash(b"x"), [], merkle.leaf_hash(b"x"))


def test_invalid_requests_raise() -> None:
    tree = tree_of(LEAVES[:5])
    with pytest.raises(merkle.ProofError):
        tree.inclusion_proof(5)
    with pytest.raises(merkle.ProofError):
        tree.inclusion_proof(0, 6)
    with pytest.raises(merkle.ProofError):
        tree.consistency_proof(6)
    with pytest.raises(merkle.ProofError):
        merkle.range_nodes(1, 3)  # not a subtree of any RFC 6962 tree


def test_frontier_reports_every_completed_subtree() -> None:
    frontier = merkle.Frontier()
    created = [frontier.append(merkle.leaf_hash(bytes([i]))) for i in range(8)]
    assert [len(c) for c in created] == [1, 2, 1, 3, 1, 2, 1, 4]
    assert created[7][-1][0] == merkle.NodeRef(3, 0)
    again = merkle.Frontier.from_bytes(frontier.size, frontier.to_bytes())
    assert again.root() == frontier.root()


def test_proofs_are_logarithmic() -> None:
    size = 1000
    tree = merkle.MemoryTree(merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(size))
    for index in (0, 1, 511, 512, 999):
        assert len(tree.inclusion_proof(index)) <= (size - 1).bit_length()
    for first in (1, 7, 512, 999):
        assert len(tree.consistency_proof(first)) <= 2 * (size - 1).bit_length()


# -- properties ----------------------------------------------------------------------------------------------

sizes = st.integers(min_value=1, max_value=200)


def _tree(size: int) -> merkle.MemoryTree:
    return merkle.MemoryTree(merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(size))


@settings(max_examples=200, deadline=None)
@given(size=sizes, data=st.data())
def test_inclusion_proofs_verify_and_nothing_else_does(size: int, data: st.DataObject) -> None:
    tree = _tree(size)
    index = data.draw(st.integers(0, size - 1))
    leaf = merkle.leaf_hash(index.to_bytes(4, "big"))
    proof = tree.inclusion_proof(index)
    root = tree.root()
    assert proof == ref_path(index, [i.to_bytes(4, "big") for i in range(size)])
    assert merkle.verify_inclusion(index, size, leaf, proof, root)
    # a different leaf, index, size or root fails
    assert not merkle.verify_inclusion(index, size, merkle.leaf_hash(b"other"), proof, root)
    other = data.draw(st.integers(0, size - 1).filter(lambda i: i != index)) if size > 1 else None
    if other is not None:
        assert not merkle.verify_inclusion(other, size, leaf, proof, root)
    bigger = size + data.draw(st.integers(1, 50))
    assert not merkle.verify_inclusion(index, bigger, leaf, proof, _tree(bigger).root())
    assert not merkle.verify_inclusion(index, size, leaf, proof, merkle.leaf_hash(b"root"))
    if proof:
        assert not merkle.verify_inclusion(index, size, leaf, proof[:-1], root)
        assert not merkle.verify_inclusion(index, size, leaf, [*proof, proof[0]], root)
        flipped = bytearray(proof[0])
        flipped[0] ^= 1
        assert not merkle.verify_inclusion(index, size, leaf, [bytes(flipped), *proof[1:]], root)


@settings(max_examples=200, deadline=None)
@given(second=sizes, data=st.data())
def test_consistency_proofs_verify_and_nothing_else_does(second: int, data: st.DataObject) -> None:
    tree = _tree(second + 60)
    first = data.draw(st.integers(1, second))
    proof = tree.consistency_proof(first, second)
    r1, r2 = tree.root(first), tree.root(second)
    assert proof == ref_proof(first, [i.to_bytes(4, "big") for i in range(second)])
    assert merkle.verify_consistency(first, second, r1, r2, proof)
    if first == second:
        return
    assert not merkle.verify_consistency(first, second, merkle.leaf_hash(b"x"), r2, proof)
    assert not merkle.verify_consistency(first, second, r1, merkle.leaf_hash(b"x"), proof)
    other_first = data.draw(st.integers(1, second - 1).filter(lambda m: m != first)) if second > 2 else None
    if other_first is not None:
        assert not merkle.verify_consistency(other_first, second, tree.root(other_first), r2, proof)
    other_second = second + data.draw(st.integers(1, 60))
    assert not merkle.verify_consistency(first, other_second, r1, tree.root(other_second), proof)
    assert not merkle.verify_consistency(first, second, r1, r2, proof[:-1])
    flipped = bytearray(proof[-1])
    flipped[-1] ^= 0x80
    assert not merkle.verify_consistency(first, second, r1, r2, [*proof[:-1], bytes(flipped)])
