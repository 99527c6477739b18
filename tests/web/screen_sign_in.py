"""Signing in to the screen through its form, as a browser does: the form fetched for its CSRF
token and cookie, then posted; the answer not followed. The one way the suite signs in, for
an in-process TestClient and a client of a live server alike."""

from __future__ import annotations

import re

import httpx


PASSWORD = "correct horse battery staple"


TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


def form_token(page: httpx.Response) -> str:
    """The CSRF token a page's form carries."""
    found = TOKEN.search(page.text)
    assert found, (page.status_code, page.text[:300])
    return found.group(1)


def sign_in(
    client: httpx.Client,
    username: str,
    password: str = PASSWORD,
    next_path: str | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """`next_path` as a browser sent back to the form carries it: in the form's address and
    in the form."""
    asked = {} if next_path is None else {"next": next_path}
    form = client.get("/login", params=asked)
    assert form.status_code == 200
    data = {"username": username, "password": password, "csrf_token": form_token(form), **asked}
    return client.post("/login", data=data, headers=headers, follow_redirects=False)
