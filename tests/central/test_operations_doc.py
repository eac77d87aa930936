"""docs/operations.md cannot drift from the app: every route it names exists, with its method."""

from __future__ import annotations

import re
from pathlib import Path

from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

DOC = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
_NAMED = re.compile(r"`((?:GET|POST|PUT)(?:\|(?:GET|POST|PUT))*)\s+(…/|/)([^`\s?]+)")


def named_routes() -> list[tuple[str, str]]:
    text = DOC.read_text("utf-8").replace("\n", " ")
    found = []
    for methods, start, rest in _NAMED.findall(text):
        path = ("/admin/customers/" if start == "…/" else "/") + rest
        for choice in re.findall(r"\{([^}]*\|[^}]*)\}", path) or [""]:
            options = choice.split("|") if choice else [""]
            for option in options:
                concrete = path.replace("{" + choice + "}", option) if choice else path
                concrete = re.sub(r"\{[^}]*\}", "x", concrete)
                found += [(method, concrete) for method in methods.split("|")]
    return found


def test_every_route_the_operations_guide_names_exists(client: TestClient) -> None:
    routes = [
        (method, re.compile("^" + re.sub(r"\{[^}]*\}", "[^/]+", route.path) + "$"))
        for route in client.app.routes  # type: ignore[attr-defined]
        if isinstance(route, APIRoute)
        for method in route.methods
    ]
    named = named_routes()
    assert len(named) >= 30
    missing = [
        (method, path)
        for method, path in named
        if not any(m == method and pattern.match(path) for m, pattern in routes)
    ]
    assert missing == []
