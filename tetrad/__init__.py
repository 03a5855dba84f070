"""tetrad: Tetragon-style eBPF security observability for plain systemd hosts."""

__version__ = "0.1.0"
