from __future__ import annotations

from collections.abc import Iterator

import pytest
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
