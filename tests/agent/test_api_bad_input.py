"""Bad input to a real agent process: each refusal precise, nothing already committed lost."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.routing import BaseRoute, Route

from agent._api import PUBLIC_ROUTES
from agent._config import load_settings
from agent._service import AgentService

from ..disks import fill, small_disk
from .agent_process import AGENT, CARD, TOKEN, AgentProcess, running_agent, write_config


def line(**changes: Any) -> dict[str, Any]:
    base = {"line_id": "1", "sku": "milk", "quantity_milli": 1000, "unit_price": 100, "total": 100}
    return base | changes


def quote_body(**changes: Any) -> dict[str, Any]:
    return {"customer": {"type": "card", "value": CARD}, "basket": {"lines": [line(**changes)]}}


def invalid(answer: httpx.Response, path: str) -> str:
    """The refusal names the field by its path; returns what it says of it."""
    assert answer.status_code == 422, answer.text
    data = answer.json()
    assert data["code"] == "invalid_request"
    assert path in data["details"], data
    assert path in data["message"]
    return str(data["details"][path])


@pytest.fixture
def client(agent: AgentProcess) -> Iterator[httpx.Client]:
    with agent.client() as made:
        yield made


@pytest.mark.parametrize(
    ("changes", "path", "says"),
    [
        ({"quantity_milli": -1000}, "body.basket.lines.0.quantity_milli", "greater than 0"),
        ({"quantity_milli": 0}, "body.basket.lines.0.quantity_milli", "greater than 0"),
        ({"unit_price": 1.0}, "body.basket.lines.0.unit_price", "valid integer"),
        ({"unit_price": 1e2}, "body.basket.lines.0.unit_price", "valid integer"),
        ({"total": True}, "body.basket.lines.0.total", "valid integer"),
        ({"quantity_milli": True}, "body.basket.lines.0.quantity_milli", "valid integer"),
        ({"unit_price": "100"}, "body.basket.lines.0.unit_price", "valid integer"),
        ({"colour": "red"}, "body.basket.lines.0.colour", "Extra inputs"),
    ],
)
def test_bad_lines_are_refused_naming_the_field(
    client: httpx.Client, changes: dict[str, Any], path: str, says: str
) -> None:
    assert says in invalid(client.post("/v1/quote", json=quote_body(**changes)), path)


def test_json_spellings_of_non_integers_are_refused(client: httpx.Client) -> None:
    head = b'{"basket": {"lines": [{"line_id": "1", "sku": "a", "quantity_milli": 1000, '
    for price in (b"1e2", b"1.0", b"100.0", b"true"):
        raw = head + b'"unit_price": ' + price + b', "total": 100}]}}'
        answer = client.post("/v1/quote", content=raw, headers={"content-type": "application/json"})
        invalid(answer, "body.basket.lines.0.unit_price")


def test_unknown_top_level_field_and_wrong_shapes(client: httpx.Client) -> None:
    invalid(client.post("/v1/quote", json={**quote_body(), "discount": 5}), "body.discount")
    invalid(client.post("/v1/reserve", json=quote_body()), "body.cheque_id")
    invalid(client.post("/v1/quote", json=[1, 2]), "body")
    confirm = {"cheque_id": "x", "fiscal_document": ""}
    invalid(client.post("/v1/confirm", json=confirm), "body.fiscal_document")
    redeem = {**quote_body(), "redeem": {"points": -5}}
    invalid(client.post("/v1/quote", json=redeem), "body.redeem.points")


def test_schema_invalid_json_is_a_precise_422(client: httpx.Client) -> None:
    answer = client.post(
        "/v1/reserve", content=b'{"cheque_id": ', headers={"content-type": "application/json"}
    )
    assert answer.status_code == 422
    assert answer.json()["code"] == "invalid_request"
    assert "JSON" in answer.json()["message"]


def test_oversized_body_is_413_whether_announced_or_streamed(agent: AgentProcess) -> None:
    big = b'{"basket": "' + b"x" * (300 * 1024) + b'"}'
    with agent.client() as client:
        announced = client.post("/v1/quote", content=big)
        assert announced.status_code == 413
        assert announced.json()["code"] == "too_large"
        chunks = (big[i : i + 65536] for i in range(0, len(big), 65536))
        streamed = client.post("/v1/quote", content=chunks)
        assert streamed.status_code == 413
        assert client.get("/v1/status").status_code == 200


def walk(routes: list[BaseRoute], prefix: str = "") -> Iterator[tuple[str, set[str]]]:
    """(path, methods) of every route, through included routers however FastAPI nests them."""
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from walk(included.routes, prefix + route.include_context.prefix)  # type: ignore[attr-defined]
        elif isinstance(route, Route):
            yield prefix + route.path, set(route.methods or ())


def test_every_route_but_the_public_ones_needs_the_token(
    agent: AgentProcess, tmp_path: Path
) -> None:
    """Walks the app's own route table, so a route added later is checked too."""
    config = write_config(tmp_path / "walk", 1)
    service = AgentService(load_settings(config))
    app = service.app
    service.till.store.close()  # only its route table is needed
    routes = list(walk(app.routes))
    paths = {path for path, _ in routes}
    assert {"/v1/reserve", "/v1/confirm", "/v1/status", "/v1/session"} <= paths
    assert paths >= PUBLIC_ROUTES
    wrong = [
        {},
        {"Authorization": "Bearer wrong-token-wrong-token"},
        {"X-Kopilka-Token": "wrong"},
        {"Authorization": TOKEN},  # no "Bearer"
    ]
    checked = 0
    for template, methods in routes:
        path = template.replace("{", "").replace("}", "")
        for method in sorted(methods - {"HEAD"}):
            for headers in wrong:
                answer = httpx.request(method, agent.url + path, headers=headers, json={})
                if template in PUBLIC_ROUTES:
                    assert answer.status_code == 200, (method, path)
                    continue
                assert answer.status_code == 401, (method, path, headers, answer.text)
                assert answer.json()["code"] == "unauthorized"
                checked += 1
            good = {"X-Kopilka-Token": TOKEN}
            assert httpx.request(method, agent.url + path, headers=good).status_code != 401
    assert checked >= 4 * 8


def test_a_bad_json_body_without_the_token_is_401_not_422(agent: AgentProcess) -> None:
    answer = httpx.post(
        f"{agent.url}/v1/reserve", content=b"{", headers={"content-type": "application/json"}
    )
    assert answer.status_code == 401


# --- storage ---------------------------------------------------------------------------


def reserve_body(cheque_id: str) -> dict[str, Any]:
    return {"cheque_id": cheque_id, **quote_body(unit_price=50000, total=50000)}


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_full_disk_is_503_and_nothing_committed_is_lost(tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk", "2m") as disk, running_agent(disk / "agent") as agent:
        client = agent.client()
        paid = f"pos-{uuid.uuid4().hex[:8]}"
        client.post("/v1/reserve", json=reserve_body(paid)).raise_for_status()
        confirm = {"cheque_id": paid, "fiscal_document": "FD-1"}
        done = client.post("/v1/confirm", json=confirm).json()
        depth = client.get("/v1/status").json()["outbox_depth"]
        filler = fill(disk)
        answer = client.post("/v1/reserve", json=reserve_body("pos-full"))
        assert answer.status_code == 503, answer.text
        assert answer.json()["code"] == "storage_unavailable"
        assert "full" in answer.json()["message"]
        assert client.post("/v1/quote", json=quote_body()).status_code == 200  # reads go on
        filler.unlink()
        assert client.post("/v1/confirm", json=confirm).json() == done
        assert client.get("/v1/status").json()["outbox_depth"] == depth
        client.post("/v1/reserve", json=reserve_body("pos-full")).raise_for_status()
        again = {"cheque_id": "pos-full", "fiscal_document": "FD-2"}
        assert client.post("/v1/confirm", json=again).json()["state"] == "confirmed"
        client.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="a read-only bind mount needs root")
def test_read_only_data_dir_stops_the_agent_with_a_message(tmp_path: Path) -> None:
    config = write_config(tmp_path / "agent", 1)
    read_only = tmp_path / "ro"
    read_only.mkdir()
    subprocess.run(["mount", "--bind", str(tmp_path / "agent"), str(read_only)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(read_only)], check=True)
        config.write_text(config.read_text().replace(str(tmp_path / "agent"), str(read_only)))
        done = subprocess.run(
            [str(AGENT), "--config", str(config), "run"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        subprocess.run(["umount", "-l", str(read_only)], check=False)
    assert "Traceback" not in done.stderr
    assert done.returncode == 2
    assert "read-only" in done.stderr or "cannot open" in done.stderr


# --- configuration ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("listen_port = \n", "not valid TOML"),
        ('listen_port = "eighty"\n', "listen_port"),
        ("listen_prot = 8765\n", "listen_prot"),
        ('[store]\nstore_id = "s"\nname = 5\n', "store.name"),
        ('api_token = "short"\n', "api_token"),
    ],
)
def test_corrupt_config_exits_2_naming_file_and_key(tmp_path: Path, text: str, named: str) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\n{text}', encoding="utf-8")
    done = subprocess.run(
        [str(AGENT), "--config", str(config), "run"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert str(config) in done.stderr
    assert named in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "data").exists()  # nothing half-configured
