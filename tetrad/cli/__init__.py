"""Command lines: `tetrad` (main.py and a module per subcommand) and `tetra`."""

import textwrap


def exit_status_epilog(statuses: dict[int, str]) -> str:
    """The exit statuses as the end of --help (with RawDescriptionHelpFormatter)."""
    lines = ["exit status:"]
    for code, meaning in statuses.items():
        lines += textwrap.wrap(meaning, 72, initial_indent=f"  {code:<4} ",
                               subsequent_indent=" " * 7)
    return "\n".join(lines)
