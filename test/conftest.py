"""Shared pytest fixtures.

ROS isolation: every test session talks DDS on its own random domain, on
loopback only, with one fixed RMW, so that parallel sessions (two developers,
CI next to a live robot) never see each other's topics. The variables are set
for the whole session, before any test runs, so rclpy contexts *and*
subprocesses started by tests (``crossi2p node``, a publisher helper) inherit
them. Set CROSSI2P_TEST_ROS_DOMAIN_ID to pin the domain (e.g. to watch the test
traffic with ``ros2 topic echo``).

rclpy is imported lazily, inside the ROS fixtures only: the non-ROS tests must
run without it (the house rule is that only ``crossi2p_ros/ros/`` needs rclpy).
"""
from __future__ import annotations

import os
import random
import time
from typing import Callable, Iterator

import pytest


def _ros_test_environment() -> dict[str, str]:
    domain = os.environ.get("CROSSI2P_TEST_ROS_DOMAIN_ID") or str(random.SystemRandom().randint(1, 100))
    return {
        "ROS_DOMAIN_ID": domain,
        # Jazzy and later: discovery only on this host.
        "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
        "ROS_STATIC_PEERS": "",
        # Humble/Iron spelling of the same; newer distros accept it alongside.
        "ROS_LOCALHOST_ONLY": "1",
        # The RMW the wheels ship; a developer's shell may name another.
        "RMW_IMPLEMENTATION": "rmw_fastrtps_cpp",
    }


@pytest.fixture(scope="session", autouse=True)
def ros_environment() -> Iterator[dict[str, str]]:
    """The isolating ROS variables, set in ``os.environ`` for the whole session.

    Returns the dict, e.g. to build a subprocess environment explicitly.
    """
    env = _ros_test_environment()
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        yield env


@pytest.fixture
def ros_context_factory(ros_environment: dict[str, str]) -> Iterator[Callable[[], object]]:
    """Make fresh, initialised ``rclpy.Context`` objects; all are shut down after the test.

    Each context is its own DDS participant, so two contexts in one process
    exercise real discovery and transport, like two processes would.
    """
    import rclpy

    contexts = []

    def make():
        context = rclpy.Context()
        rclpy.init(context=context, domain_id=int(ros_environment["ROS_DOMAIN_ID"]))
        contexts.append(context)
        return context

    yield make
    for context in reversed(contexts):
        context.try_shutdown()


@pytest.fixture
def ros_context(ros_context_factory):
    """One initialised ``rclpy.Context`` for this test (shut down afterwards)."""
    return ros_context_factory()


@pytest.fixture
def ros_node_factory(ros_context_factory) -> Iterator[Callable[..., object]]:
    """``make(name, context=None, **kwargs) -> rclpy.node.Node``; nodes are destroyed after the test.

    Without ``context`` each node gets a context of its own (a separate participant).
    """
    from rclpy.node import Node

    nodes = []

    def make(name: str, context=None, **kwargs):
        node = Node(name, context=context if context is not None else ros_context_factory(), **kwargs)
        nodes.append(node)
        return node

    yield make
    for node in reversed(nodes):
        node.destroy_node()


def spin_until(nodes, predicate: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    """Spin ``nodes`` (one executor per context) until ``predicate()`` holds or ``timeout_s`` passes.

    Bounded: returns False on timeout instead of hanging, so a test fails in
    about ``timeout_s`` when nothing arrives.
    """
    from rclpy.executors import SingleThreadedExecutor

    executors = {}
    for node in nodes:
        context = node.context
        if id(context) not in executors:
            executors[id(context)] = SingleThreadedExecutor(context=context)
        executors[id(context)].add_node(node)
    deadline = time.monotonic() + timeout_s
    try:
        while not predicate():
            if time.monotonic() > deadline:
                return False
            for executor in executors.values():
                executor.spin_once(timeout_sec=0.05)
        return True
    finally:
        for executor in executors.values():
            for node in list(executor.get_nodes()):
                executor.remove_node(node)
            executor.shutdown(timeout_sec=1.0)


@pytest.fixture(name="spin_until")
def spin_until_fixture() -> Callable[..., bool]:
    """The :func:`spin_until` helper, as a fixture (test modules don't import conftest)."""
    return spin_until


@pytest.fixture
def harness(ros_context_factory):
    """``make(**parameters) -> Harness``: a real calibration node and a tester node; all closed afterwards."""
    from _node_harness import Harness

    made = []

    def make(**parameters):
        h = Harness(ros_context_factory, parameters)
        made.append(h)
        return h

    yield make
    for h in made:
        h.close()
