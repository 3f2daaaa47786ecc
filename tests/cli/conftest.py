"""Fixtures the CLI's tests share."""

from __future__ import annotations

import pytest


@pytest.fixture
def fake(monkeypatch):
    """A fake daemon client (tests/cli/test_timeline.py's FakeDaemon) in place of v2vz.client.Client."""
    import v2vz.client

    from .test_timeline import FakeClient, FakeDaemon

    daemon = FakeDaemon()
    monkeypatch.setattr(FakeClient, "daemon", daemon, raising=False)
    monkeypatch.setattr(v2vz.client, "Client", FakeClient)
    return daemon
