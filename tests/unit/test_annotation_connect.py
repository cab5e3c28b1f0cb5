"""`connect` uses what it is given, else the environment, and never starts a server."""

from __future__ import annotations

import socket
import sys

import pytest

from workbench.annotation import ArgillaUnavailableError, connect


@pytest.fixture
def no_environment(monkeypatch):
    monkeypatch.delenv("ARGILLA_API_URL", raising=False)
    monkeypatch.delenv("ARGILLA_API_KEY", raising=False)


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"  # nothing listens there once closed


def test_connect_says_how_to_reach_a_server(no_environment):
    url = closed_port_url()
    with pytest.raises(ArgillaUnavailableError) as error:
        connect(url, "some-key", retries=0)
    message = str(error.value)
    assert url in message and "ARGILLA_API_URL" in message and "workbench argilla up" in message
    with pytest.raises(ArgillaUnavailableError, match="both api_url and api_key"):
        connect(url)


def test_without_a_server_configured_it_says_how_to_start_the_embedded_one(no_environment, monkeypatch):
    monkeypatch.delitem(sys.modules, "workbench_argilla_embedded", raising=False)
    with pytest.raises(ArgillaUnavailableError) as error:
        connect()
    message = str(error.value)
    assert "No Argilla server is configured" in message and "ARGILLA_API_URL and ARGILLA_API_KEY" in message
    assert "workbench argilla up" in message and "resolve_server()" in message and "start_server()" in message
    assert "connect(info.api_url, info.api_key)" in message
    assert "workbench_argilla_embedded" not in sys.modules  # nothing was started, nor even imported


def test_the_environment_names_the_server(no_environment, monkeypatch):
    url = closed_port_url()
    monkeypatch.setenv("ARGILLA_API_URL", url)
    with pytest.raises(ArgillaUnavailableError, match="Only ARGILLA_API_URL is set"):
        connect()
    monkeypatch.setenv("ARGILLA_API_KEY", "some-key")
    with pytest.raises(ArgillaUnavailableError, match=f"No Argilla server answered at {url}"):
        connect(retries=0)
    monkeypatch.delenv("ARGILLA_API_URL")
    with pytest.raises(ArgillaUnavailableError, match="Only ARGILLA_API_KEY is set"):
        connect()
