"""A form's errors in a real headless Chromium, against the real `servicetrail serve` of
test_browser (its store and story): each error beside its field, read whole on a phone."""

from __future__ import annotations

import pytest

from tests.web.browser_story import (
    ESME,
    search_device,
    shot,
    sign_in,
)

pytestmark = pytest.mark.browser

SIDEWAYS = "document.documentElement.scrollWidth - window.innerWidth"
LONG = "W" * 120  # what a paste of the wrong column puts in a field: no space to wrap at


def test_an_error_quoting_a_long_value_wraps(server: str, page) -> None:
    """An error quotes what was typed, up to 60 characters; without a space in it, the message
    and its line in the summary ran 250-340 px past a 390 px phone's edge, on every form
    (review of the screen, 47d)."""
    sign_in(page, server, "bright.analyst")
    search_device(page, ESME)
    page.locator("table.records a[href^='/records/']").first.click()
    page.wait_for_load_state()
    record = page.url.split("?")[0]
    forms = {
        "search": server + f"/?request_id={LONG}&from={LONG}",
        "report": None,
        "watches": None,
        "triggers": record + "?window=" + "9" * 60,
    }
    # each form sent once, then resized: the widths are the style sheet's alone
    for name, url in forms.items():
        page.set_viewport_size({"width": 390, "height": 800})
        if url:
            page.goto(url)
        elif name == "report":
            page.goto(server + "/report")
            page.get_by_label("From (UTC)").fill(LONG)
            page.get_by_label("From (UTC)").press("Enter")
            page.wait_for_load_state()
        else:
            page.goto(server + "/watches")
            page.get_by_label("These SRVs:").check()
            page.get_by_label("SRV numbers").fill("1" * 120)
            page.get_by_label("SRV numbers").press("Enter")
            page.wait_for_load_state()
        assert page.locator(".field-error-message").count(), name
        for width in (390, 320):
            page.set_viewport_size({"width": width, "height": 800})
            assert page.evaluate(SIDEWAYS) <= 0, (name, width, page.evaluate(SIDEWAYS))
            if width == 390:
                shot(page, f"47-error-quoting-a-long-value-{name}-390px")
