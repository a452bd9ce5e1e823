"""``crossi2p play BAG``: a small bag player over rosbags + rclpy, publishing ``/clock`` for ``use_sim_time``.

Messages are published as recorded (raw CDR, no re-serialisation) at their bag
time scaled by ``rate``; ``/clock`` carries the bag time before each message.
``/tf_static`` is published transient-local like tf2's static broadcaster;
other topics reliable (which best-effort sensor subscribers accept).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Iterable

import rclpy
from rclpy.node import Node
from rosgraph_msgs.msg import Clock

from ..bag import bag_topics, iter_raw
from ..errors import CrossI2PError
from .messages import message_class, time_msg
from .qos import PLAY_QOS, STATIC_TF_QOS


def play(node: Node, bag: Path, rate: float = 1.0, topics: Iterable[str] | None = None,
         exclude: Iterable[str] = (), clock: bool = True, wait_for_subscribers_s: float = 0.0,
         on_message: Callable[[str, int], None] | None = None) -> int:
    """Publish the bag's messages from ``node``; returns the number published."""
    if rate <= 0:
        raise CrossI2PError(f"rate {rate}: must be positive")
    available = bag_topics(bag)
    chosen = [t for t in (topics if topics is not None else available) if t not in set(exclude)]
    publishers = {}
    for t in chosen:
        if t not in available:
            raise CrossI2PError(f"bag {bag} has no topic {t!r}; it has {sorted(available)}")
        try:
            cls = message_class(available[t][0])
        except (ImportError, AttributeError):
            node.get_logger().warning(f"skipping {t}: message type {available[t][0]} is not installed")
            continue
        publishers[t] = node.create_publisher(cls, t, STATIC_TF_QOS if t == "/tf_static" else PLAY_QOS)
    clock_pub = node.create_publisher(Clock, "/clock", 10) if clock else None
    deadline = time.monotonic() + wait_for_subscribers_s
    while time.monotonic() < deadline and not all(p.get_subscription_count() > 0 for p in publishers.values()):
        time.sleep(0.05)
    start_wall, first_ns, count = time.monotonic(), None, 0
    for topic, _, stamp, raw in iter_raw(bag, list(publishers)):
        first_ns = stamp if first_ns is None else first_ns
        delay = start_wall + (stamp - first_ns) * 1e-9 / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        if clock_pub is not None:
            clock_pub.publish(Clock(clock=time_msg(stamp)))
        publishers[topic].publish(raw)
        count += 1
        if on_message is not None:
            on_message(topic, stamp)
    return count


def main(bag: Path, rate: float = 1.0, topics: list[str] | None = None, exclude: Iterable[str] = (),
         clock: bool = True, loop: bool = False) -> int:
    rclpy.init()
    node = Node("crossi2p_player")
    try:
        while True:
            n = play(node, bag, rate, topics, exclude, clock, wait_for_subscribers_s=1.0)
            print(f"published {n} messages from {bag}")
            if not loop:
                break
    except KeyboardInterrupt:
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0
