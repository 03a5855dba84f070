"""The policy registry's transitions, with a fake loader (pure logic)."""

import hashlib

import pytest

from tetrad.policy import registry as reg
from tetrad.policy.registry import Desired, PolicyRegistry, RequestError
from tetrad.policy.schema import parse
from tests import policy_files
from tests.policy_files import FakeLoader


def desired(source, name="p1", value="1"):
    text = policy_files.lseek_equal(name, value)
    return Desired(source, hashlib.sha256(text.encode()).hexdigest(), parse(text, source))


def broken(source, text="kind: [unclosed"):
    return Desired(source, hashlib.sha256(text.encode()).hexdigest(), error=f"{source}: bad YAML")


@pytest.fixture
def k():
    return FakeLoader()


@pytest.fixture
def r(k):
    return PolicyRegistry(k)


def states(r):
    return {e.source: (e.name, e.state) for e in r.entries()}


def test_disable_edit_enable_loads_the_file_as_it_is_now(r, k):
    """The bug of the four owners: the old version came back and the new
    file was marked failed."""
    r.reconcile(reg.DIRECTORY, [desired("/d/a.yaml", value="1")])
    r.disable("p1")
    assert k.loaded == [] and states(r) == {"/d/a.yaml": ("p1", "disabled")}
    r.reconcile(reg.DIRECTORY, [desired("/d/a.yaml", value="2")])
    assert k.loaded == []                          # disabled: remembered, not loaded
    r.enable("p1")
    assert k.loaded == [("p1", "2")]
    entry = r.find("p1")
    assert entry.state == "enabled" and entry.error == "" and entry.loaded.digest == entry.digest


def test_new_version_loads_before_the_old_unloads_and_a_bad_one_keeps_the_old(r, k):
    r.reconcile(reg.DIRECTORY, [desired("/d/a.yaml", value="1")])
    r.reconcile(reg.DIRECTORY, [desired("/d/a.yaml", value="2")])
    assert k.log == [("load", ("p1", "1")), ("load", ("p1", "2")), ("unload", ("p1", "1"))]
    r.reconcile(reg.DIRECTORY, [broken("/d/a.yaml")])
    assert k.loaded == [("p1", "2")]
    entry = r.find("p1")
    assert entry.state == "enabled" and "bad YAML" in entry.error and r.errors == 1
    r.reconcile(reg.DIRECTORY, [broken("/d/a.yaml")])
    assert r.errors == 1                           # the same problem is reported once


def test_a_refused_version_is_retried_on_reload_only(r, k):
    k.refuse.add("1")
    r.reconcile(reg.DIRECTORY, [desired("/d/a.yaml")])
    assert states(r) == {"/d/a.yaml": ("p1", "error")}
    k.refuse.clear()
    r.reconcile(reg.DIRECTORY, [desired("/d/a.yaml")])
    assert k.loaded == []                          # unchanged: not retried
    r.reconcile(reg.DIRECTORY, [desired("/d/a.yaml")], retry=True)
    assert k.loaded == [("p1", "1")] and states(r)["/d/a.yaml"] == ("p1", "enabled")


def test_a_loader_crash_is_that_policy_s_error_and_the_others_load(r, k, caplog):
    k.crash.add("1")
    r.reconcile(reg.DIRECTORY, [desired("/d/a.yaml", "a", "1"), desired("/d/b.yaml", "b", "2")])
    assert k.loaded == [("b", "2")]
    assert "internal error while loading" in r.find("a").error and "a loader bug" in caplog.text


def test_removed_source_unloads_even_when_disabled(r, k):
    r.reconcile(reg.DIRECTORY, [desired("/d/a.yaml", "a"), desired("/d/b.yaml", "b", "2")])
    r.disable("b")
    r.reconcile(reg.DIRECTORY, [])
    assert k.loaded == [] and r.entries() == []
    with pytest.raises(RequestError, match="no policy named 'b'"):
        r.enable("b")


def test_a_name_change_in_a_file_swaps_the_policies(r, k):
    r.reconcile(reg.DIRECTORY, [desired("/d/a.yaml", "old")])
    r.reconcile(reg.DIRECTORY, [desired("/d/a.yaml", "new", "2")])
    assert k.loaded == [("new", "2")] and r.find("old") is None


def test_duplicate_names_first_source_wins_until_it_is_gone(r, k):
    r.reconcile(reg.DIRECTORY, [desired("/d/a.yaml", "same", "1"), desired("/d/b.yaml", "same", "2")])
    assert k.loaded == [("same", "1")]
    assert "already loaded from /d/a.yaml" in states_error(r, "/d/b.yaml")
    r.reconcile(reg.DIRECTORY, [desired("/d/b.yaml", "same", "2")])
    assert k.loaded == [("same", "2")]             # the conflict is re-decided, no edit needed


def states_error(r, source):
    return next(e.error for e in r.entries() if e.source == source)


def test_api_add_and_delete_and_the_rules_for_file_policies(r, k):
    r.reconcile(reg.DIRECTORY, [desired("/d/a.yaml", "file-policy")])
    added = r.add(desired("api", "api-policy", "5").policy)
    assert added.source == "api:api-policy" and ("api-policy", "5") in k.loaded
    with pytest.raises(RequestError, match="edit that file instead"):
        r.add(desired("api", "file-policy", "6").policy)
    with pytest.raises(RequestError, match="delete it first"):
        r.add(desired("api", "api-policy", "7").policy)
    with pytest.raises(RequestError, match="remove that file"):
        r.delete("file-policy")
    r.delete("api-policy")
    assert k.loaded == [("file-policy", "1")]
    # a directory file may not take a name the API holds, either
    r.add(desired("api", "taken", "8").policy)
    r.reconcile(reg.DIRECTORY, [desired("/d/a.yaml", "file-policy"), desired("/d/c.yaml", "taken", "9")])
    assert "already loaded from api:taken" in states_error(r, "/d/c.yaml")


def test_api_add_that_fails_keeps_nothing(r, k):
    k.refuse.add("5")
    with pytest.raises(RequestError, match="the kernel refused it"):
        r.add(desired("api", "x", "5").policy)
    assert r.entries() == [] and k.loaded == []


def test_enable_that_fails_stays_disabled(r, k):
    r.reconcile(reg.DIRECTORY, [desired("/d/a.yaml", value="1")])
    r.disable("p1")
    k.refuse.add("1")
    with pytest.raises(RequestError, match="the kernel refused it"):
        r.enable("p1")
    assert r.find("p1").state == "disabled" and k.loaded == []
    k.refuse.clear()
    r.enable("p1")
    assert k.loaded == [("p1", "1")]


def test_enable_of_a_source_that_now_does_not_parse_is_refused(r, k):
    r.reconcile(reg.DIRECTORY, [desired("/d/a.yaml")])
    r.disable("p1")
    r.reconcile(reg.DIRECTORY, [broken("/d/a.yaml")])
    assert states(r) == {"/d/a.yaml": ("p1", "disabled")}
    with pytest.raises(RequestError, match="does not hold a valid policy now.*bad YAML"):
        r.enable("p1")
    assert k.loaded == []


def test_requests_that_make_no_sense_say_so(r, k):
    r.reconcile(reg.DIRECTORY, [desired("/d/a.yaml")])
    with pytest.raises(RequestError, match="is not disabled"):
        r.enable("p1")
    r.disable("p1")
    with pytest.raises(RequestError, match="already disabled"):
        r.disable("p1")
    with pytest.raises(RequestError, match="no policy named 'zz'"):
        r.delete("zz")


def test_origins_do_not_touch_each_other(r, k):
    r.reconcile(reg.FILE, [desired("/etc/x.yaml", "from-flag")])
    r.reconcile(reg.DIRECTORY, [desired("/d/a.yaml", "from-dir", "2")])
    r.reconcile(reg.DIRECTORY, [])
    assert k.loaded == [("from-flag", "1")]
