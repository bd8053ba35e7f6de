import pytest

from signer import keycache


class Clock:
    """The key cache's clock, moved by tests instead of sleeping."""

    def __init__(self):
        self.t = 1_000_000.0

    def __call__(self):
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


@pytest.fixture
def clock(monkeypatch):
    c = Clock()
    monkeypatch.setattr(keycache, "now", c)
    return c
