"""bpfobject's pure parts: the instruction patcher, the cache key, and the
cache's refusal of anything the daemon did not write itself (the cache
holds code the kernel will run, so a file another user could have written
must never be loaded)."""

import logging
import os
import struct

import pytest

from tetrad.sensors.bpfobject import (CACHE_ENTRIES, LD_IMM64, POINT_MAGIC, Cache, CompileError, Compiled,
                                      MapSpec, cache_key, patch)

EXIT = struct.pack("<BBhi", 0x95, 0, 0, 0)
MOV = struct.pack("<BBhi", 0xB7, 0x01, 0, 7)           # r0 = 7: not a 64-bit load


def ld_imm64(dst: int, src: int, value: int) -> bytes:
    lo, hi = value & 0xFFFFFFFF, value >> 32
    return (struct.pack("<BBhI", LD_IMM64, src << 4 | dst, 0, lo)
            + struct.pack("<BBhI", 0, 0, 0, hi))


def imms(code: bytes) -> list[tuple[int, int, int]]:
    """(src, low imm, high imm) of every 64-bit load in code."""
    out, i = [], 0
    while i < len(code):
        op, regs, _, lo = struct.unpack_from("<BBhI", code, i)
        if op == LD_IMM64:
            hi = struct.unpack_from("<BBhI", code, i + 8)[3]
            out.append((regs >> 4, lo, hi))
            i += 16
        else:
            i += 8
    return out


def test_patch_moves_every_map_reference_and_only_those():
    code = MOV + ld_imm64(1, 1, 3) + ld_imm64(2, 0, 3) + ld_imm64(1, 1, 4) + EXIT
    out = patch(code, {3: 40, 4: 41})
    assert imms(out) == [(1, 40, 0), (0, 3, 0), (1, 41, 0)]
    assert out[:8] == MOV and out[-8:] == EXIT and len(out) == len(code)


def test_patch_puts_the_point_number_in_place_of_the_magic():
    code = ld_imm64(3, 0, POINT_MAGIC) + ld_imm64(1, 1, 5) + EXIT
    out = patch(code, {5: 9}, point=17)
    assert imms(out) == [(0, 17, 0), (1, 9, 0)]
    # Without a point the magic stays: the shared stages never carry one.
    assert imms(patch(code, {5: 9})) == [(0, POINT_MAGIC & 0xFFFFFFFF, POINT_MAGIC >> 32), (1, 9, 0)]


def test_patch_refuses_an_unknown_map_and_a_missing_point():
    with pytest.raises(CompileError, match="map descriptor 6"):
        patch(ld_imm64(1, 1, 6) + EXIT, {5: 9})
    with pytest.raises(CompileError, match="no point number"):
        patch(ld_imm64(1, 1, 5) + EXIT, {5: 9}, point=2)


def sources(tmp_path):
    d = tmp_path / "bpf"
    d.mkdir()
    (d / "generic_hook.c").write_text("int x;\n")
    (d / "generic.h").write_text("#define A 1\n")
    return d / "generic_hook.c"


def test_cache_key_follows_every_source_file_and_the_flags(tmp_path):
    src = sources(tmp_path)
    first = cache_key(src, ["-DA=1", "-DB=2"])
    assert cache_key(src, ["-DB=2", "-DA=1"]) == first          # flag order is not meaning
    assert cache_key(src, ["-DA=1", "-DB=3"]) != first          # a struct offset changed
    (src.parent / "generic.h").write_text("#define A 2\n")
    assert cache_key(src, ["-DA=1", "-DB=2"]) != first          # a header changed


COMPILED = Compiled((MapSpec("events", 3, 27, 0, 0, 4096, 0),), {"g_read": EXIT * 2}, "GPL", 0)


def cache_dir(tmp_path):
    d = tmp_path / "cache"
    d.mkdir(mode=0o700)
    return d


def test_cache_returns_what_it_was_given(tmp_path):
    cache = Cache(str(cache_dir(tmp_path)))
    assert cache.get("k") is None
    cache.put("k", COMPILED)
    assert cache.get("k") == COMPILED
    [entry] = (tmp_path / "cache").iterdir()
    assert entry.name == "k.json" and entry.stat().st_mode & 0o777 == 0o600


def test_cache_makes_its_directory_root_only(tmp_path):
    cache = Cache(str(tmp_path / "new" / "bpf"))
    cache.put("k", COMPILED)
    assert (tmp_path / "new" / "bpf").stat().st_mode & 0o777 == 0o700
    assert cache.get("k") == COMPILED


def test_the_cache_keeps_only_the_newest_entries(tmp_path):
    d = cache_dir(tmp_path)
    cache = Cache(str(d))
    for i in range(CACHE_ENTRIES + 3):
        cache.put(f"k{i}", COMPILED)
        os.utime(d / f"k{i}.json", (1000 + i, 1000 + i))
    assert sorted(p.name for p in d.iterdir()) == sorted(f"k{i}.json" for i in range(3, CACHE_ENTRIES + 3))


def test_an_empty_setting_disables_the_cache(tmp_path):
    cache = Cache("")
    cache.put("k", COMPILED)
    assert cache.get("k") is None


def test_a_directory_others_can_write_is_not_used(tmp_path, caplog):
    d = cache_dir(tmp_path)
    cache = Cache(str(d))
    cache.put("k", COMPILED)
    os.chmod(d, 0o777)
    with caplog.at_level(logging.WARNING):
        assert cache.get("k") is None
        cache.put("k2", COMPILED)
    assert not (d / "k2.json").exists()
    assert "owned by root with mode 0700" in caplog.text


@pytest.mark.parametrize("how", ["group-writable", "others-readable", "symlink", "not-root"])
def test_an_entry_the_daemon_did_not_write_is_ignored(tmp_path, how):
    d = cache_dir(tmp_path)
    cache = Cache(str(d))
    cache.put("k", COMPILED)
    entry = d / "k.json"
    if how == "group-writable":
        os.chmod(entry, 0o620)
    elif how == "others-readable":
        os.chmod(entry, 0o604)
    elif how == "symlink":
        target = tmp_path / "elsewhere.json"
        os.rename(entry, target)
        os.symlink(target, entry)
    else:
        os.chown(entry, 65534, 65534)
    assert cache.get("k") is None


def test_a_corrupt_entry_is_compiled_again_with_a_warning(tmp_path, caplog):
    d = cache_dir(tmp_path)
    cache = Cache(str(d))
    cache.put("k", COMPILED)
    (d / "k.json").write_text('{"maps": [')
    with caplog.at_level(logging.WARNING):
        assert cache.get("k") is None
    assert "unreadable" in caplog.text and "compiling instead" in caplog.text
