"""Shared fixtures. Kept small: a lab namespace, and the rule that network tests need root.

Tests marked `netns` create their own namespaces on 198.18.0.0/15 / fd00::/8. They never
skip: without root they fail saying why, because CI runs as root and a silent skip there
would hide a broken lab.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from impl.lab.netns import NetworkNamespace, list_namespaces, remove_stale_namespaces


def pytest_sessionstart(session: pytest.Session) -> None:
    # Namespaces of earlier runs that were SIGKILLed (their pid is in the name).
    if os.geteuid() == 0:
        remove_stale_namespaces()


@pytest.fixture(autouse=True)
def _netns_tests_need_root(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("netns") and os.geteuid() != 0:
        pytest.fail("this test is marked netns: it creates network namespaces and TUN "
                    "devices and must run as root (CI does); run pytest as root",
                    pytrace=False)


@pytest.fixture
def netns() -> Iterator[NetworkNamespace]:
    """A fresh namespace with lo up; asserted gone after the test, pass or fail."""
    with NetworkNamespace() as namespace:
        yield namespace
    assert namespace.name not in list_namespaces()
