"""Every kind of loss reaches the one summary the stats line, STATUS=,
`tetra status` and metrics show (tetrad.daemon.losses)."""

from tetrad.daemon import losses


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
