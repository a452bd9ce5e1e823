"""Approximate-time pairing: nearest partner within the slop, each message once, drops counted, clock jumps reset."""
from crossi2p_ros.sync import ApproximateTimeSync, SyncConfig

MS = 1_000_000


def _feed(sync, events):
    pairs = []
    for kind, t in events:
        pairs += (sync.add_image if kind == "i" else sync.add_cloud)(t * MS, f"{kind}{t}")
    return pairs


def test_pairs_each_cloud_with_the_nearest_image_within_the_slop():
    sync = ApproximateTimeSync(SyncConfig(max_slop_s=0.05))
    # camera at 30 Hz, LiDAR at 10 Hz with a 7 ms offset, interleaved as they would arrive
    events = sorted([("i", t) for t in range(0, 1000, 33)] + [("c", t + 7) for t in range(0, 1000, 100)],
                    key=lambda e: e[1])
    pairs = _feed(sync, events)
    assert [p.cloud for p in pairs] == [f"c{t + 7}" for t in range(0, 1000, 100)]
    for p in pairs:
        assert abs(p.offset_s) <= 0.0165 + 1e-9                  # nearest of a 33 ms camera
    assert len({p.image for p in pairs}) == len(pairs)            # each image used once


def test_clouds_without_an_image_in_slop_are_dropped_and_counted():
    sync = ApproximateTimeSync(SyncConfig(max_slop_s=0.01))
    pairs = _feed(sync, [("c", 100), ("i", 150), ("c", 200), ("i", 203), ("i", 260)])
    assert [(p.image, p.cloud) for p in pairs] == [("i203", "c200")]
    assert sync.stats.dropped_clouds == 1 and sync.stats.pairs == 1


def test_out_of_order_arrival_within_a_stream_still_pairs():
    sync = ApproximateTimeSync(SyncConfig(max_slop_s=0.02))
    pairs = _feed(sync, [("i", 110), ("i", 100), ("c", 101), ("i", 130)])
    assert [(p.image, p.cloud) for p in pairs] == [("i100", "c101")]


def test_a_clock_jump_backwards_resets_the_queues():
    sync = ApproximateTimeSync(SyncConfig(max_slop_s=0.05, reset_jump_s=1.0))
    _feed(sync, [("i", 5000), ("c", 5010)])
    pairs = _feed(sync, [("c", 10), ("i", 12), ("i", 40)])    # the bag starts over
    assert sync.stats.resets == 1
    assert [(p.image, p.cloud) for p in pairs] == [("i12", "c10")]
    # ... and goes on from there: one reset per jump, not one per message of the stream that jumped
    pairs = _feed(sync, [("c", 110), ("i", 111), ("c", 210), ("i", 212), ("i", 300)])
    assert sync.stats.resets == 1
    assert [(p.image, p.cloud) for p in pairs] == [("i111", "c110"), ("i212", "c210")]


def test_queues_stay_bounded_when_one_stream_stops():
    sync = ApproximateTimeSync(SyncConfig(queue_size=5))
    _feed(sync, [("c", t) for t in range(0, 5000, 100)])
    assert len(sync._clouds) <= 5 and sync.stats.dropped_clouds >= 45


def test_flush_pairs_the_clouds_still_waiting_at_the_end():
    sync = ApproximateTimeSync(SyncConfig(max_slop_s=0.02))
    assert _feed(sync, [("i", 100), ("c", 105)]) == []           # a later image could still be nearer
    assert [(p.image, p.cloud) for p in sync.flush()] == [("i100", "c105")]
