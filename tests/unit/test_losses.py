"""Every kind of loss reaches the one summary the stats line, STATUS=,
`tetra status` and metrics show (tetrad.daemon.losses)."""

from tetrad.daemon import losses, stats_text, status_text


def test_each_kind_of_loss_is_summed_from_where_it_is_counted():
    stats = {
        "ringbuf_drops": {"exec": 2, "exit": 1}, "policy_drops": 4, "policy_shed": 8,
        "queue_drops": 16, "record_errors": 32, "policy_records_unknown_hook": 64,
        # the file counts its lost lines (each also a failed write): not twice
        "sinks": {"jsonfile": {"lost_lines": 128, "errors": 129},
                  "journald": {"errors": 256},
                  "api": {"client_drops": 512, "errors": 0}},
    }
    assert losses(stats) == {"ringbuf_full": 7, "shed": 8, "queue_full": 16, "sink_failed": 384,
                             "record_errors": 32, "unknown_hook": 64, "api_client_slow": 512}
    assert sum(losses(stats).values()) == 1023


def test_nothing_lost_is_all_zero():
    assert set(losses({}).values()) == {0}


STATS = {"ringbuf_drops": {"exec": 2, "exit": 1}, "policy_drops": 4, "policy_shed": 8,
         "queue_drops": 16, "record_errors": 32, "policy_records_unknown_hook": 64,
         "sinks": {"journald": {"errors": 256}, "api": {"client_drops": 512, "errors": 0}},
         "records": 5000, "events_written": 3000, "process_cache": {"size": 9, "misses": 1}}


def test_status_names_every_kind_of_loss_that_happened_and_the_total():
    rows = [{"state": "enabled"}, {"state": "enabled", "error": "x"}, {"state": "disabled"}]
    line = status_text(rows, losses(STATS), 12.4)
    assert line == ("2 policies loaded, 1 with errors; 12 events/s; 895 lost (ringbuf_full 7, "
                    "shed 8, queue_full 16, sink_failed 256, record_errors 32, unknown_hook 64, "
                    "api_client_slow 512)")
    assert status_text([], losses({}), 0) == "0 policies loaded; 0 events/s; 0 lost"


def test_the_stop_line_has_every_kind_of_loss():
    line = stats_text({**STATS, "losses": losses(STATS)})
    fields = dict(word.split("=") for word in line.split())
    assert {k: int(fields[k]) for k in losses(STATS)} == losses(STATS)
    assert (fields["records"], fields["written"], fields["ringbuf_drops"]) == ("5000", "3000", "3")
