"""One total over the host and guest pytest runs (JUnit XML files).

A test skipped on the host because it needs the guest, and run there, counts
once, as what it did in the guest. A test skipped everywhere stays skipped.
Exits non-zero if any test failed or errored, or if no test ran.
"""

import sys
import xml.etree.ElementTree as ET


def outcomes(path: str) -> dict[str, str]:
    result = {}
    for case in ET.parse(path).iter("testcase"):
        name = f"{case.get('classname')}.{case.get('name')}"
        if case.find("failure") is not None or case.find("error") is not None:
            result[name] = "failed"
        elif case.find("skipped") is not None:
            result[name] = "skipped"
        else:
            result[name] = "passed"
    return result


def main(paths: list[str]) -> int:
    merged: dict[str, str] = {}
    for path in paths:
        try:
            runs = outcomes(path)
        except (OSError, ET.ParseError) as err:
            print(f"summary: cannot read {path}: {err}", file=sys.stderr)
            return 1
        for name, outcome in runs.items():
            if merged.get(name) in (None, "skipped"):
                merged[name] = outcome
            elif outcome == "failed":
                merged[name] = "failed"
    counts = {k: sum(1 for v in merged.values() if v == k) for k in ("passed", "failed", "skipped")}
    print(f"tests: {counts['passed']} passed, {counts['failed']} failed, "
          f"{counts['skipped']} skipped")
    return 1 if counts["failed"] or not counts["passed"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
