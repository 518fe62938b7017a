from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from litestar import Litestar
from litestar.testing import TestClient
from sqlalchemy.engine import Engine

from governance.domain.clock import FixedClock
from governance.settings import Settings
from governance.web.app import create_app


@pytest.fixture
def app(settings: Settings, engine: Engine, clock: FixedClock) -> Litestar:
    return create_app(settings, engine=engine, clock=clock)


@pytest.fixture
def client(app: Litestar) -> Iterator[TestClient[Litestar]]:
    with TestClient(app) as c:
        yield c


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def live_url(app: Litestar) -> Iterator[str]:
    """The app served by uvicorn on a free port in a thread (for real HTTP clients and the browser)."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("server did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)
