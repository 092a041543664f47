"""Attachments to groups (issue #14 item 5): one encrypted attachment for the whole group, its
key inside the group message, carried once by relays; every member gets the same bytes."""

from __future__ import annotations

import random

import pytest

from meshmsg.config import NodeConfig
from meshmsg.core.attach.format import CHUNK_BYTES
from meshmsg.core.attach.table import Role
from meshmsg.core.events import AttachmentComplete, GroupMessageReceived
from meshmsg.core.groups.records import GROUP_FILES_BODY_BYTES
from meshmsg.errors import GroupError, InvalidAttachment
from tests.core.test_attach_node import opened, seal_into
from tests.core.test_group_node import bodies, group_mesh, meet
from tests.helpers import Mesh

SIZE = 3 * CHUNK_BYTES + 500  # four chunks
MEMBERS = ("alice", "bob", "carol")


def a_group(*, relay: bool) -> tuple[Mesh, bytes]:
    """Alice's group of three; its operations and her chain have reached both members."""
    mesh = group_mesh(*MEMBERS, relay=relay)
    alice = mesh.nodes["alice"]
    gid = alice.create_group("cell", [mesh.peer_id("bob"), mesh.peer_id("carol")], now=mesh.now)
    alice.send_group_message(gid, "hello", now=mesh.now)
    for other in ("bob", "carol"):
        meet(mesh, "alice", other)
    return mesh, gid


def complete(mesh: Mesh, name: str) -> list[AttachmentComplete]:
    return mesh.of_type(name, AttachmentComplete)


def test_every_member_gets_the_same_bytes_and_the_relay_one_copy() -> None:
    mesh, gid = a_group(relay=True)
    data = random.Random(5).randbytes(SIZE)
    ref = seal_into(mesh, "alice", data)
    alice = mesh.nodes["alice"]
    mid = alice.send_group_message(gid, "the map", now=mesh.now, refs=[ref])
    assert alice.attachments[ref.attachment_id].role is Role.OWN
    assert alice.attachments[ref.attachment_id].message_id == mid
    meet(mesh, "alice", "relay")
    assert mesh.chunks_written["relay"] == 4  # the relay took one copy of each chunk
    assert mesh.nodes["relay"].attachments[ref.attachment_id].role is Role.RELAY
    meet(mesh, "relay", "bob")
    assert bodies(mesh, "bob")[-1] == "the map"
    assert complete(mesh, "bob") == [AttachmentComplete(attachment_id=ref.attachment_id)]
    assert opened(mesh, "bob", ref) == data
    # Bob's completion sent no receipt (one member's copy is not everyone's): the relay
    # keeps the chunks for the other members, and bob carries them on.
    assert ref.attachment_id in mesh.nodes["relay"].attachments
    meet(mesh, "bob", "carol")
    assert complete(mesh, "carol") == [AttachmentComplete(attachment_id=ref.attachment_id)]
    assert opened(mesh, "carol", ref) == opened(mesh, "bob", ref) == data
    assert mesh.chunks_written["relay"] == 4  # one copy of the file, for the whole group
    (received,) = [e for e in mesh.of_type("carol", GroupMessageReceived) if e.body == "the map"]
    assert received.message_id == mid


def test_a_member_hands_the_file_on_to_another() -> None:
    mesh, gid = a_group(relay=False)
    data = random.Random(6).randbytes(SIZE)
    ref = seal_into(mesh, "alice", data)
    mesh.nodes["alice"].send_group_message(gid, "photo", now=mesh.now, refs=[ref])
    meet(mesh, "alice", "bob")
    assert opened(mesh, "bob", ref) == data
    mesh.stop("alice")  # alice is gone: carol can only have it from bob
    meet(mesh, "bob", "carol")
    assert bodies(mesh, "carol")[-1] == "photo"
    assert complete(mesh, "carol") == [AttachmentComplete(attachment_id=ref.attachment_id)]
    assert opened(mesh, "carol", ref) == data


def test_group_files_are_checked_before_anything_changes() -> None:
    mesh, gid = a_group(relay=False)
    alice = mesh.nodes["alice"]
    ref = seal_into(mesh, "alice", b"x" * 100)
    bad = type(ref)(ref.attachment_id, ref.manifest, ref.key, b"\x00" * 16, ref.name, ref.size,
                    ref.media_type)  # fmt: skip
    sent_before = len(alice.groups.find(gid).messages)
    with pytest.raises(InvalidAttachment):
        alice.send_group_message(gid, "bad", now=mesh.now, refs=[bad])
    with pytest.raises(GroupError, match="body over"):
        alice.send_group_message(gid, "x" * (GROUP_FILES_BODY_BYTES + 1), now=mesh.now, refs=[ref])
    limit = NodeConfig().attach.max_attachments_per_message
    with pytest.raises(GroupError, match="too many attachments"):
        alice.send_group_message(gid, "many", now=mesh.now, refs=[ref] * (limit + 1))
    assert len(alice.groups.find(gid).messages) == sent_before
    assert ref.attachment_id not in alice.attachments


def test_the_largest_group_file_message_fits_one_envelope() -> None:
    mesh, gid = a_group(relay=False)
    limit = NodeConfig().attach.max_attachments_per_message
    refs = [seal_into(mesh, "alice", b"y" * 10, seed=i) for i in range(limit)]
    refs = [type(r)(r.attachment_id, r.manifest, r.key, r.done_token, "n" * 255, r.size,
                    r.media_type) for r in refs]  # fmt: skip
    body = "é" * (GROUP_FILES_BODY_BYTES // 2)
    mesh.nodes["alice"].send_group_message(gid, body, now=mesh.now, refs=refs)
    meet(mesh, "alice", "bob")
    assert bodies(mesh, "bob")[-1] == body
    assert len(complete(mesh, "bob")) == limit


def test_a_member_restarted_after_completing_still_hands_the_file_on() -> None:
    """Whether a file is a group's is looked up again after a restart: no receipt is sent
    then either, and the chunks still go to the other members."""
    mesh, gid = a_group(relay=False)
    data = random.Random(7).randbytes(SIZE)
    ref = seal_into(mesh, "alice", data)
    mesh.nodes["alice"].send_group_message(gid, "plan", now=mesh.now, refs=[ref])
    meet(mesh, "alice", "bob")
    assert opened(mesh, "bob", ref) == data
    mesh.stop("bob")
    mesh.start("bob")
    assert mesh.nodes["bob"].attachments[ref.attachment_id].role is Role.WANTED
    mesh.stop("alice")
    meet(mesh, "bob", "carol")
    assert opened(mesh, "carol", ref) == data
