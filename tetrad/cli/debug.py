"""`tetrad debug`: what the kernel side gets, for bug reports (bcc's --ebpf idea)."""

from __future__ import annotations

from tetrad.sensors.process import ProcessSensor


def run(args) -> int:
    if args.debug_command == "dump-bpf":
        sensor = ProcessSensor()
        print(f"// {sensor.source()}")
        print("// cflags: " + " ".join(sensor.cflags()))
        print(sensor.source().read_text())
    return 0
