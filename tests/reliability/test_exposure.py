"""The fault admin routes: closed without the right bearer token, absent without a configured one.

Checked on the gateway (``/api/admin/faults/{service}`` and its own ``/admin/faults``) and on
each service's port directly, since a service that trusted the gateway to check would be open
to anyone who can reach it.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import httpx
import pytest

from stackctl.stack import Stack
from tests.reliability.conftest import ADMIN_TOKEN, SENT_SECRETS, StackFactory, record
from tests.reliability.support import PROBLEM_JSON, SERVICES

WRONG = f"wrong-{secrets.token_hex(8)}"
SENT_SECRETS.add(WRONG)
BAD_AUTH: dict[str, dict[str, str]] = {
    "no header": {},
    "wrong token": {"Authorization": f"Bearer {WRONG}"},
    "token without scheme": {"Authorization": ADMIN_TOKEN},
    "basic scheme": {"Authorization": f"Basic {ADMIN_TOKEN}"},
    "token with a suffix": {"Authorization": f"Bearer {ADMIN_TOKEN}x"},
    "token prefix": {"Authorization": f"Bearer {ADMIN_TOKEN[:-1]}"},
    "bearer without a token": {"Authorization": "Bearer"},
}
METHODS = ("GET", "POST", "DELETE")
HARMLESS_FAULT = {"kind": "error", "value": "503", "path_prefix": "/never", "duration_seconds": 60}


def admin_urls(stack: Stack) -> list[str]:
    return [
        *(f"{stack.gateway_url}/api/admin/faults/{service}" for service in SERVICES),
        f"{stack.gateway_url}/admin/faults",
        *(f"{stack.service_url(service)}/admin/faults" for service in SERVICES),
    ]


def call(method: str, url: str, headers: dict[str, str]) -> httpx.Response:
    body = HARMLESS_FAULT if method == "POST" else None
    return httpx.request(method, url, json=body, headers=headers, timeout=10)


@pytest.mark.parametrize("auth", BAD_AUTH)
def test_admin_routes_refuse_a_missing_or_wrong_token(shared_stack: Stack, auth: str) -> None:
    for url in admin_urls(shared_stack):
        for method in METHODS:
            response = call(method, url, BAD_AUTH[auth])
            assert response.status_code == 401, (method, url, response.text)
            assert response.headers["content-type"] == PROBLEM_JSON
            assert ADMIN_TOKEN not in response.text
    # Nothing was injected by the refused POSTs.
    right = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    for url in admin_urls(shared_stack):
        assert call("GET", url, right).json()["faults"] == []


def test_the_right_token_opens_them(shared_stack: Stack) -> None:
    """The control: the same routes work with the token, so the 401s above mean refusal."""
    right = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    for url in admin_urls(shared_stack):
        added = call("POST", url, right)
        assert added.status_code == 201, added.text
        assert [f["path_prefix"] for f in call("GET", url, right).json()["faults"]] == ["/never"]
        assert call("DELETE", url, right).json()["cleared"] == 1
    record(
        "admin exposure (token set)",
        routes=len(admin_urls(shared_stack)) * len(METHODS),
        bad_credentials=len(BAD_AUTH),
        answers="401 for every bad credential, 2xx with the token",
    )


@pytest.fixture(scope="module")
def tokenless(stacks: StackFactory) -> Iterator[Stack]:
    with stacks.running("no-admin-token", env={"ADMIN_TOKEN": ""}) as stack:
        yield stack


def test_admin_routes_are_off_without_a_configured_token(tokenless: Stack) -> None:
    right_elsewhere = {"Authorization": f"Bearer {ADMIN_TOKEN}"}  # the shared stack's token
    for headers in (*BAD_AUTH.values(), right_elsewhere):
        for url in admin_urls(tokenless):
            for method in METHODS:
                response = call(method, url, headers)
                assert response.status_code == 404, (method, url, headers, response.text)
                assert response.headers["content-type"] == PROBLEM_JSON
    record(
        "admin exposure (no token configured)",
        routes=len(admin_urls(tokenless)) * len(METHODS),
        credentials_tried=len(BAD_AUTH) + 1,
        answers="404 on every route, method and credential",
    )
