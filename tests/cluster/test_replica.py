"""
The replica of the other nodes' members (no Redis): a nick connected on
several nodes is one member of each room it is in through any of them.
"""

from __future__ import annotations

from twisted_chat.cluster.protocol import MemberState
from twisted_chat.cluster.replica import Replica


def test_nickOnTwoNodesCountsOnce() -> None:
    r = Replica()
    r.add("b", "alice", "Alice", ["#r"])
    r.add("c", "alice", "Alice", ["#r", "#s"])
    r.add("c", "carol", "carol", ["#r"])
    assert r.roomCount("#r") == 2 and sorted(r.roomNicks("#r")) == ["Alice", "carol"]
    assert r.roomCounts() == {"#r": 2, "#s": 1}
    assert r.nodesOf("alice") == ["b", "c"] and r.nodesOf("alice", "#s") == ["c"]
    # one node's part leaves her in the room through the other
    r.parted("b", "alice", "#r")
    assert r.inRoom("alice", "#r") and r.nodesOf("alice", "#r") == ["c"]
    r.parted("c", "alice", "#r")
    assert not r.inRoom("alice", "#r") and r.roomNicks("#r") == ["carol"]
    # a part from a node that is not in the room changes nothing
    r.parted("b", "alice", "#s")
    assert r.inRoom("alice", "#s")


def test_oneNodeGoes() -> None:
    r = Replica()
    r.add("b", "alice", "alice", ["#r"])
    r.joined("c", "alice", "alice", "#r")
    r.joined("c", "bob", "bob", "#r")
    r.remove("alice", "b")
    assert r.get("alice") is not None and r.get("alice").node == "c"  # type: ignore[union-attr]
    assert r.inRoom("alice", "#r")
    r.dropNode("c")
    assert r.get("alice") is None and r.get("bob") is None
    assert r.roomCounts() == {} and r.byNode == {}


def test_nodeRegisteredReplacesOnlyThatNode() -> None:
    r = Replica()
    r.load({"b": {"alice": MemberState("alice", ("#r",))}, "c": {"alice": MemberState("alice", ("#s",))}})
    r.setNode("b", {"bob": MemberState("bob", ("#r",))})
    assert r.nodesOf("alice") == ["c"] and not r.inRoom("alice", "#r") and r.inRoom("alice", "#s")
    assert sorted(r.roomNicks("#r")) == ["bob"]
    # forgetting a nick everywhere
    r.add("b", "alice", "alice", ["#r"])
    r.remove("alice")
    assert r.nodesOf("alice") == [] and r.roomNicks("#s") == []
