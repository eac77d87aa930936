"""Every route but the public ones refuses a missing or wrong credential; admin and device
credentials are not interchangeable; a device writes only its own entries; revocation bites."""

from __future__ import annotations

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from central import PUBLIC_ROUTES
from central.cli import main as central_cli

from .tills import Hq


def _routes(client: TestClient) -> list[tuple[str, str]]:
    found = []
    for route in client.app.routes:  # type: ignore[attr-defined]
        path = getattr(route, "path", "")
        methods = getattr(route, "methods", None) or {"GET"}
        for method in sorted(methods - {"HEAD", "OPTIONS"}):
            found.append((method, path))
    return found


def test_public_routes_are_the_declared_ones(client: TestClient) -> None:
    paths = {path for _, path in _routes(client)}
    assert paths >= PUBLIC_ROUTES
    for route in client.app.routes:  # type: ignore[attr-defined]
        # Nothing the walk below cannot see (a mounted app, an included router) may hide.
        assert isinstance(route, APIRoute) or route.path in PUBLIC_ROUTES, route
    assert {"/health", "/sync/enroll", "/openapi.json", "/docs"} == PUBLIC_ROUTES


def test_every_route_refuses_missing_and_wrong_credentials(hq: Hq, client: TestClient) -> None:
    till = hq.enroll()
    checked = 0
    for route in client.app.routes:  # type: ignore[attr-defined]
        if not isinstance(route, APIRoute) or route.path in PUBLIC_ROUTES:
            continue
        path = route.path.replace("{", "").replace("}", "")  # path params get their own name
        admin_route = route.path.startswith("/admin")
        wrong = [
            {},
            {"Authorization": "Bearer"},
            {"Authorization": "Bearer kdev_not-a-secret"},
            {"Authorization": "Bearer kadm_not-a-token"},
            {"Authorization": "Basic " + till.enrolled.secret},
            till.headers if admin_route else hq.headers,
        ]
        for method in route.methods:
            for headers in wrong:
                response = client.request(method, path, headers=headers, json={})
                assert response.status_code == 401, (method, path, headers, response.text)
                assert response.json()["code"] == "unauthorized"
                checked += 1
    assert checked >= 6 * 12


def test_revoked_device_is_refused(hq: Hq) -> None:
    hq.customer("c1")
    till = hq.enroll()
    assert till.push([till.entry("c1", 1)]).status_code == 200
    hq.post(f"/admin/devices/{till.device_id}/revoke")
    assert till.push([till.entry("c1", 1)]).status_code == 401
    assert till.pull(0).status_code == 401
    devices = hq.client.get("/admin/devices", headers=hq.headers).json()
    assert [(d["device_id"], d["status"], d["acked_seq"]) for d in devices] == [
        (till.device_id, "revoked", 1)
    ]


def test_device_cannot_push_for_another(hq: Hq, client: TestClient) -> None:
    hq.customer("c1")
    mine, other = hq.enroll(), hq.enroll()
    body = other.body([other.entry("c1", 5)])
    response = client.post("/sync/push", json=body, headers=mine.headers)
    assert response.status_code == 403
    assert response.json()["code"] == "wrong_device"


def test_enrollment_code_works_once(hq: Hq, client: TestClient) -> None:
    hq.store("s1")
    code = hq.post("/admin/stores/s1/enrollment-codes")["code"]
    first = client.post("/sync/enroll", json={"code": code})
    assert first.status_code == 200
    assert first.json()["store"]["store_id"] == "s1"
    again = client.post("/sync/enroll", json={"code": code})
    assert again.status_code == 401
    assert again.json()["code"] == "bad_enrollment_code"
    assert client.post("/sync/enroll", json={"code": "AAAA-BBBB-CCCC-DDDD"}).status_code == 401


def test_reinstalled_till_gets_a_new_epoch_and_the_old_secret_dies(hq: Hq) -> None:
    hq.customer("c1")
    old = hq.enroll()
    assert old.push([old.entry("c1", 1)]).status_code == 200
    new = hq.enroll(previous_device_id=old.device_id)
    assert (new.device_id, new.enrolled.device_epoch) == (old.device_id, 2)
    assert old.push([old.entry("c1", 1)]).status_code == 401
    assert new.push([new.entry("c1", 1)]).status_code == 200


@pytest.mark.parametrize("path", ["/health", "/openapi.json"])
def test_public_routes_answer_without_credentials(client: TestClient, path: str) -> None:
    assert client.get(path).status_code == 200


def test_an_admin_token_is_revoked_from_the_command_line(
    db_url: str, client: TestClient, capsys: pytest.CaptureFixture[str]
) -> None:
    """`kopilka-central admin-token --label L` makes a token; `--revoke` stops every live token
    of L at once (a leaked one, someone who left), and says when there was none."""
    made = central_cli(["admin-token", "--db", db_url, "--label", "ops"])
    token = capsys.readouterr().out.strip()
    assert made == 0
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/admin/stores", headers=headers).status_code == 200
    revoke = ["admin-token", "--db", db_url, "--label", "ops", "--revoke"]
    assert central_cli(revoke) == 0
    assert capsys.readouterr().out.strip() == "revoked 1 admin token(s) labelled 'ops'"
    assert client.get("/admin/stores", headers=headers).status_code == 401
    assert central_cli(revoke) == 1
