import os

import pytest

from tetrad.policy import registry as reg
from tetrad.policy.directory import PolicyDirectory, wanted
from tetrad.policy.registry import PolicyRegistry
from tests import policy_files
from tests.policy_files import FakeLoader

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="ownership checks need root to chown")


class Synced:
    """The directory and the registry, as the daemon joins them."""

    def __init__(self, directory: str, kernel: FakeLoader):
        self.directory = PolicyDirectory(directory)
        self.registry = PolicyRegistry(kernel)

    def sync(self, retry=False):
        desired = self.directory.scan()
        if desired is not None:
            self.registry.reconcile(reg.DIRECTORY, desired, retry)

    @property
    def errors(self):
        return self.registry.errors

    def error(self, path):
        return next(e.error for e in self.registry.entries() if e.source == str(path))


@pytest.fixture
def setup(tmp_path):
    d = tmp_path / "policies.d"
    d.mkdir(mode=0o755)
    os.chmod(d, 0o755)
    k = FakeLoader()
    return d, k, Synced(str(d), k)


def put(d, fname, name="p1", value="1", mode=0o644):
    return policy_files.put(d, fname, policy_files.lseek_equal(name, value), mode)


def test_add_change_remove(setup):
    d, k, pd = setup
    put(d, "a.yaml")
    pd.sync()
    assert k.loaded == [("p1", "1")]
    pd.sync()                                   # unchanged: nothing happens
    assert len(k.log) == 1
    put(d, "a.yaml", value="2")
    pd.sync()
    assert k.loaded == [("p1", "2")]
    assert k.log[1:] == [("load", ("p1", "2")), ("unload", ("p1", "1"))]   # new before old goes
    (d / "a.yaml").unlink()
    pd.sync()
    assert k.loaded == []


def test_bad_new_version_keeps_the_old_one_and_is_retried_only_when_changed_or_reloaded(setup, caplog):
    d, k, pd = setup
    put(d, "a.yaml")
    pd.sync()
    (d / "a.yaml").write_text("kind: [unclosed")
    pd.sync()
    assert k.loaded == [("p1", "1")] and pd.errors == 1
    assert "version loaded before stays in force: p1" in caplog.text
    pd.sync()
    assert pd.errors == 1                        # same broken content: reported once
    k.refuse.add("3")
    put(d, "a.yaml", value="3")
    pd.sync()
    assert k.loaded == [("p1", "1")] and "the kernel refused it" in pd.error(d / "a.yaml")
    k.refuse.clear()
    pd.sync(retry=True)
    assert k.loaded == [("p1", "3")]


def test_unsafe_files_are_refused_and_others_still_load(setup, caplog):
    d, k, pd = setup
    put(d, "group-writable.yaml", name="gw", mode=0o664)
    put(d, "world-writable.yaml", name="ww", mode=0o646)
    os.chown(put(d, "not-root.yaml", name="nr"), 1000, 0)
    os.symlink(put(d, "target.yml", name="t"), d / "link.yaml")
    put(d, "good.yml", name="good")
    pd.sync()
    assert sorted(n for n, _ in k.loaded) == ["good", "t"]
    assert "group- or world-writable (mode 0664)" in caplog.text
    assert "group- or world-writable (mode 0646)" in caplog.text
    assert "owned by uid 1000, not root" in caplog.text
    assert "is a symbolic link" in caplog.text


def test_writable_directory_is_refused_entirely(setup, caplog):
    d, k, pd = setup
    put(d, "a.yaml")
    os.chmod(d, 0o777)
    pd.sync()
    assert k.loaded == [] and "directory" in caplog.text and "mode 0777" in caplog.text


def test_duplicate_names_first_one_wins(setup, caplog):
    d, k, pd = setup
    put(d, "a.yaml", name="same", value="1")
    put(d, "b.yaml", name="same", value="2")
    pd.sync()
    assert k.loaded == [("same", "1")] and "already loaded from" in caplog.text


def test_missing_directory_is_empty(tmp_path):
    k = FakeLoader()
    Synced(str(tmp_path / "nope"), k).sync()
    assert k.loaded == []


@pytest.mark.parametrize("name,ok", [("a.yaml", True), ("a.yml", True), ("a.json", True),
                                     (".a.yaml.swp", False), ("a.yaml~", False),
                                     ("#a.yaml#", False), (".a.yaml", False), ("a.txt", False)])
def test_which_names_count(name, ok):
    assert wanted(name) == ok
