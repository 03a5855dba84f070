import pytest

from tetrad.process.exec_id import exec_id, parse_exec_id


def test_matches_tetragon_example():
    # From a Tetragon export: node "master", ktime 1091952633147893, pid 865697.
    assert exec_id("master", 1091952633147893, 865697) == "bWFzdGVyOjEwOTE5NTI2MzMxNDc4OTM6ODY1Njk3"


def test_round_trip_with_colons_in_node_name():
    assert parse_exec_id(exec_id("a:b", 12, 3)) == ("a:b", 12, 3)


def test_rejects_garbage():
    with pytest.raises(ValueError):
        parse_exec_id("not base64!")
