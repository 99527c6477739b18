"""Signing in to the screen through its form, as a browser does (the form's CSRF token read
from the page), shared by the screen's tests."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient


PASSWORD = "correct horse battery staple"


TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


def sign_in(
    client: TestClient, username: str, password: str = PASSWORD, next_path: str | None = None
):
    form = client.get("/login")
    assert form.status_code == 200
    data = {
        "username": username,
        "password": password,
        "csrf_token": TOKEN.search(form.text).group(1),
    }
    if next_path is not None:
        data["next"] = next_path
    return client.post("/login", data=data, follow_redirects=False)
