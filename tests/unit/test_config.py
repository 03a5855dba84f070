import pytest

from tetrad import config as cfg
from tetrad.paths import shipped_etc_dir


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_shipped_defaults_equal_the_code_defaults():
    loaded = cfg.load([shipped_etc_dir() / "tetrad.toml"])
    assert loaded.export.file == "/var/log/tetragon/tetragon.log"
    assert loaded.policies.dir == "/etc/tetragon/policies.d"
    assert loaded.process == cfg.ProcessConfig()


def test_layers_apply_in_order_key_by_key(tmp_path):
    write(tmp_path / "tetrad.toml", '[export]\nmax_size_mb = 50\nmax_backups = 2\n')
    write(tmp_path / "tetrad.d/20-b.toml", '[export]\nmax_backups = 9\n')
    write(tmp_path / "tetrad.d/10-a.toml", '[export]\nmax_backups = 3\ncompress = true\n')
    write(tmp_path / "tetrad.d/ignored.conf", 'nonsense')
    files = cfg.layer_files(tmp_path)
    assert [p.name for p in files[1:]] == ["tetrad.toml", "10-a.toml", "20-b.toml"]
    c = cfg.load(files, {"node_name": "flag"})
    assert (c.export.max_size_mb, c.export.max_backups, c.export.compress) == (50, 9, True)
    assert c.node == "flag" and c.export.file == "/var/log/tetragon/tetragon.log"


@pytest.mark.parametrize("text,message", [
    ('[export]\nmax_sise_mb = 5\n', r"bad.toml: unknown key 'export.max_sise_mb'"),
    ('queue_size = "big"\n', r"bad.toml: queue_size must be int, not str"),
    ('[process]\nringbuf_pages = 1000\n', r"process.ringbuf_pages = 1000 is out of range: a power of two"),
    ('stats_interval = "soon"\n', r"stats_interval: 'soon' is not a duration"),
    ('export = 3\n', r"export must be a table"),
    ('[export\n', r"bad.toml: not valid TOML"),
])
def test_bad_config_names_file_and_key(tmp_path, text, message):
    bad = write(tmp_path / "bad.toml", text)
    with pytest.raises(cfg.ConfigError, match=message):
        cfg.load([bad])


def test_durations():
    assert cfg.parse_duration("90") == 90 and cfg.parse_duration("5m") == 300
    assert cfg.parse_duration("1h") == 3600 and cfg.parse_duration("250ms") == 0.25
