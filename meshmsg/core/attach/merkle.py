"""The Merkle tree over an attachment's encrypted chunks (docs/protocol/attachments.md).

The tree has RFC 6962's shape: built bottom-up, a level's last node without a sibling is
promoted unchanged to the next level. Leaves and inner nodes are hashed under different
BLAKE2b personalisations, so a leaf can never pass for an inner node (second preimages).

A proof for leaf ``i`` of ``n`` is the list of sibling hashes from the leaf up, skipping the
levels where the node was promoted; its length is a function of ``(i, n)`` alone, so a
verifier refuses a proof of any other length before hashing anything.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Final

from meshmsg.errors import InvalidAttachment

HASH_BYTES: Final = 32
MAX_DEPTH: Final = 16  # 65,536 leaves: a proof never has more than 16 hashes
_PERSON_LEAF: Final = b"meshmsg/1 leaf"
_PERSON_NODE: Final = b"meshmsg/1 node"


def leaf_hash(ciphertext: bytes) -> bytes:
    """The hash of one encrypted chunk, as it enters the tree."""
    return hashlib.blake2b(ciphertext, digest_size=HASH_BYTES, person=_PERSON_LEAF).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """An inner node: the hash of its two children."""
    return hashlib.blake2b(left + right, digest_size=HASH_BYTES, person=_PERSON_NODE).digest()


def proof_length(index: int, count: int) -> int:
    """How many hashes the proof of leaf ``index`` of ``count`` has (promoted levels skipped)."""
    _check_position(index, count)
    length = 0
    while count > 1:
        if index % 2 == 1 or index + 1 < count:
            length += 1
        index //= 2
        count = (count + 1) // 2
    return length


def root_from_proof(leaf: bytes, index: int, count: int, proof: Sequence[bytes]) -> bytes:
    """Recompute the root from a leaf hash and its proof; raise if the proof is malformed."""
    _check_position(index, count)
    if len(proof) != proof_length(index, count):
        raise InvalidAttachment(f"proof for chunk {index} of {count} has the wrong length")
    node, used = leaf, 0
    while count > 1:
        if index % 2 == 1:
            node, used = node_hash(_hash(proof[used]), node), used + 1
        elif index + 1 < count:
            node, used = node_hash(node, _hash(proof[used])), used + 1
        index //= 2
        count = (count + 1) // 2
    return node


def verify(root: bytes, leaf: bytes, index: int, count: int, proof: Sequence[bytes]) -> None:
    """Raise :class:`InvalidAttachment` unless ``leaf`` is leaf ``index`` of the tree ``root``."""
    if root_from_proof(leaf, index, count, proof) != root:
        raise InvalidAttachment(f"chunk {index} does not match the attachment's chunk map")


class MerkleTree:
    """All levels of a tree, for the holder of every leaf (the sender): roots and proofs.

    Memory: 64 bytes per leaf (two levels' worth in total), 140 KB for a 128 MiB attachment.
    """

    __slots__ = ("_levels",)

    def __init__(self, leaves: Sequence[bytes]) -> None:
        if not 1 <= len(leaves) <= 1 << MAX_DEPTH:
            raise InvalidAttachment(f"a tree has 1 to {1 << MAX_DEPTH} leaves, not {len(leaves)}")
        levels = [[_hash(leaf) for leaf in leaves]]
        while len(levels[-1]) > 1:
            below = levels[-1]
            above = [node_hash(below[i], below[i + 1]) for i in range(0, len(below) - 1, 2)]
            if len(below) % 2 == 1:
                above.append(below[-1])  # promoted: no sibling at this level
            levels.append(above)
        self._levels = levels

    @property
    def count(self) -> int:
        return len(self._levels[0])

    @property
    def root(self) -> bytes:
        return self._levels[-1][0]

    def proof(self, index: int) -> tuple[bytes, ...]:
        """The sibling hashes of leaf ``index``, from the bottom up."""
        _check_position(index, self.count)
        proof: list[bytes] = []
        for level in self._levels[:-1]:
            sibling = index ^ 1
            if sibling < len(level):
                proof.append(level[sibling])
            index //= 2
        return tuple(proof)


def _check_position(index: int, count: int) -> None:
    if not 1 <= count <= 1 << MAX_DEPTH or not 0 <= index < count:
        raise InvalidAttachment(f"chunk {index} of {count} is out of range")


def _hash(value: bytes) -> bytes:
    if len(value) != HASH_BYTES:
        raise InvalidAttachment(f"a tree hash is {HASH_BYTES} bytes, not {len(value)}")
    return value
