import time

from tetrad.service.notify import Notifier


class Recorder:
    def __init__(self):
        self.sent = []

    def notify(self, text):
        self.sent.append(text)


def test_compiling_during_start_extends_the_timeout_and_feeds_the_watchdog(monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "60000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    rec = Recorder()
    n = Notifier(rec)
    n.extend(120, "compiling policy x")
    assert rec.sent == ["EXTEND_TIMEOUT_USEC=120000000\nSTATUS=compiling policy x\nWATCHDOG=1"]
    n.watchdog()                      # just pinged: not due yet (interval is half of 60 s)
    assert len(rec.sent) == 1
    n.ready("1 policies loaded")
    assert rec.sent[-1] == "READY=1\nSTATUS=1 policies loaded"


def test_without_a_watchdog_nothing_is_pinged(monkeypatch):
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    rec = Recorder()
    n = Notifier(rec)
    n.extend(10, "x")
    n.watchdog()
    assert rec.sent == ["EXTEND_TIMEOUT_USEC=10000000\nSTATUS=x"]


def test_a_step_longer_than_the_watchdog_keeps_it_fed_until_it_ends(monkeypatch):
    """bcc's compile blocks the main loop; under emulation it outlasts
    WatchdogSec (the guest's unit was killed mid-start). busy() pings from a
    thread while the step runs, and stops when it ends."""
    monkeypatch.setenv("WATCHDOG_USEC", "100000")            # pings every 50 ms
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    rec = Recorder()
    n = Notifier(rec)
    with n.busy(120, "compiling the process sensor"):
        time.sleep(0.4)                                       # the step: 8 intervals
    pings = [m for m in rec.sent if m == "WATCHDOG=1"]
    assert rec.sent[0].startswith("EXTEND_TIMEOUT_USEC=120000000\nSTATUS=compiling")
    assert len(pings) >= 4
    after = len(rec.sent)
    time.sleep(0.2)
    assert len(rec.sent) == after                             # nothing once the step ended
