"""Container identity: which container a process runs in, from its cgroup."""
