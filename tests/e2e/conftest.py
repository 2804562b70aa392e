"""Shared fixtures: a demo server and a gateway factory that cleans up."""

import pytest

from harness import DemoServer, Gateway


@pytest.fixture
def demo():
    server = DemoServer()
    yield server
    server.stop()


@pytest.fixture
def gateway_factory():
    started: list[Gateway] = []

    def start(config: str, **kwargs) -> Gateway:
        gw = Gateway(config, **kwargs)
        started.append(gw)
        return gw

    yield start
    for gw in started:
        gw.stop()
