"""A browser that follows a bad link gets a page, not JSON; the API keeps answering JSON."""

from __future__ import annotations

from typing import Any

import pytest

HTML = {"accept": "text/html,application/xhtml+xml,*/*;q=0.8"}


@pytest.mark.parametrize("path", ["/proposals/abc", "/audit/abc", "/no-such-page"])
def test_unmatched_page_is_an_html_404(client: Any, path: str) -> None:
    response = client.get(path, headers=HTML)
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert "Not found" in response.text
    assert "default-src 'self'" in response.headers["content-security-policy"]
    assert response.headers["x-frame-options"] == "DENY"


def test_api_and_scripts_keep_json_errors(client: Any) -> None:
    for headers in (HTML, {"accept": "application/json"}):
        response = client.get("/api/v1/proposals/abc", headers=headers)
        assert response.status_code == 404
        assert response.json()["error"] == "not_found"
    assert client.get("/proposals/abc").headers["content-type"].startswith("application/json")


def test_favicon(client: Any) -> None:
    response = client.get("/favicon.ico", follow_redirects=True)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("image/svg+xml")
    assert '<link rel="icon" href="/static/favicon.svg"' in client.get("/login").text
