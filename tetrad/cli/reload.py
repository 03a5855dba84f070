"""`tetrad reload`: make the running daemon re-read config and policies, and
wait until it has (systemd's ExecReload). Exit statuses as `tetra`'s
(tetrad/api/client.py); a failure is one line on standard error."""

from __future__ import annotations

import sys

from tetrad.api import client


def _outcome(result: dict) -> str:
    try:
        errors = int(result["policy_errors"])
        return (f"reloaded in {float(result['seconds'])}s; {errors} policy errors"
                + (" (see journalctl -u tetrad)" if errors else ""))
    except (KeyError, TypeError, ValueError) as err:
        raise client.bad_answer(f"the reload's outcome ({type(err).__name__}: {err})") from None


def run(args) -> int:
    try:
        result = client.request(args.socket, "reload")
        if not result["ok"]:
            print(f"tetrad: reload refused: {result.get('error')}", file=sys.stderr)
            return client.EXIT_REFUSED
        print(_outcome(result))
    except client.ApiError as err:
        print(f"tetrad: {err}", file=sys.stderr)
        return err.exit_status
    except KeyboardInterrupt:
        return client.EXIT_INTERRUPTED
    return client.EXIT_OK
