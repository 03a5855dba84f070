"""The kernel ABI: what bpf/*.h lay out, as Python sees it.

The bottom floor of the package: op codes and flag bits (`ops`), process
sensor records and execve_map values (`records`), compiled policies and
policy records (`generic`), each as ctypes mirrors and as the `struct`
formats the decoders read. It imports nothing else of tetrad, so every
layer above (decode, policy, sensors, events) can use it without a cycle.
tests/kernel/test_record_layout.py holds it against clang's layout of the
headers.
"""
