"""The web UI in a real browser against real daemons: two people meet, write, verify.

Every step goes through what a person sees and uses: accessible names of controls ("Message",
"Send", "Contact code", "Add contact", conversation links named after the contact), no test
ids and no API calls behind the page's back.
"""

from __future__ import annotations

import re
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest

from tests.browser.harness import daemons, screenshot

pytestmark = pytest.mark.timeout(180)
UI_TIMEOUT_MS = 30_000  # link set-up, pairing and a receipt between two real daemons


def tiny_png() -> bytes:
    """A valid 8x8 red PNG, made here (no image library needed)."""
    raw = b"".join(b"\x00" + b"\xff\x00\x00" * 8 for _ in range(8))

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 8, 8, 8, 2, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
    return png + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def open_ui(browser: Any, url: str) -> Any:
    context = browser.new_context(viewport={"width": 1200, "height": 800})
    page = context.new_page()
    page.set_default_timeout(UI_TIMEOUT_MS)
    page.goto(url)
    page.get_by_text("Live").wait_for()
    return page


def own_code(page: Any) -> str:
    page.get_by_role("link", name="Contacts").click()
    return str(page.locator("#own-code").inner_text()).strip()


def add_contact(page: Any, code: str, name: str) -> None:
    page.get_by_role("link", name="Contacts").click()
    page.get_by_role("textbox", name="Contact code").fill(code)
    page.get_by_role("button", name="Add contact").click()
    page.get_by_role("row", name=re.compile(name)).wait_for()


def test_two_people_add_each_other_write_and_verify(browser: Any, tmp_path: Path) -> None:
    with daemons(tmp_path, "alice", "bob") as (alice, bob):
        a = open_ui(browser, alice.ui_url())
        b = open_ui(browser, bob.ui_url())
        # The token left the address bar at once (it lives only in the HttpOnly cookie now).
        assert "token" not in a.url
        add_contact(a, own_code(b), "bob")
        add_contact(b, own_code(a), "alice")
        screenshot(a, "contacts")

        a.get_by_role("link", name="bob", exact=True).first.click()
        a.get_by_role("textbox", name="Message").fill("Meet at the north gate, 14:00")
        a.get_by_role("button", name="Send").click()
        sent = a.locator(".message.out").filter(has_text="Meet at the north gate")
        sent.wait_for()

        b.get_by_role("link", name="alice", exact=True).first.click()
        inbox = b.get_by_role("list", name="Messages with alice")
        inbox.get_by_text("Meet at the north gate, 14:00").wait_for()
        # The sender sees the receipt come back: delivered (or read, once Bob's page marks it).
        sent.get_by_text(re.compile("delivered|read")).first.wait_for()
        sent.locator("summary").click()
        assert "queued:" in sent.locator("ol").inner_text()
        screenshot(a, "conversation")

        # Safety numbers agree on both sides; Alice marks Bob verified.
        a.get_by_role("link", name="Contacts").click()
        row_a = a.get_by_role("row", name=re.compile("bob"))
        b.get_by_role("link", name="Contacts").click()
        row_b = b.get_by_role("row", name=re.compile("alice"))
        number_a = row_a.locator(".safety summary").inner_text()
        assert number_a == row_b.locator(".safety summary").inner_text()
        assert re.fullmatch(r"[\d ]{40,}", number_a.strip())
        row_a.get_by_role("button", name="Mark verified bob").click()
        a.get_by_role("row", name=re.compile("bob")).get_by_text("verified in person").wait_for()
        screenshot(a, "contacts-verified")

        a.get_by_role("link", name="Status").click()
        a.get_by_role("heading", name="Peers linked now").wait_for()
        a.get_by_role("cell", name="bob").wait_for()
        # Either side may keep its own dial (the duplicate is closed): the link shows its
        # address both ways, an inbound one the host it came from.
        link = re.compile(r"^(inbound from 127\.0\.0\.1|dialled 127\.0\.0\.1:\d+)$")
        a.get_by_role("cell", name=link).wait_for()
        screenshot(a, "status")


def test_a_message_is_sent_with_the_keyboard_only(browser: Any, tmp_path: Path) -> None:
    with daemons(tmp_path, "carol", "dave") as (carol, dave):
        c = open_ui(browser, carol.ui_url())
        d = open_ui(browser, dave.ui_url())
        add_contact(c, own_code(d), "dave")
        add_contact(d, own_code(c), "carol")
        c.goto(c.url.split("#")[0] + "#/")
        c.get_by_text("Live").wait_for()
        # Tab to the conversation link, open it, tab to the message box, type, press Enter.
        for _ in range(30):
            c.keyboard.press("Tab")
            if c.evaluate("document.activeElement.textContent") == "dave":
                break
        else:
            raise AssertionError("the conversation link cannot be reached with Tab")
        c.keyboard.press("Enter")
        c.get_by_role("textbox", name="Message").wait_for()
        for _ in range(30):
            if c.evaluate("document.activeElement.id") == "composer":
                break
            c.keyboard.press("Tab")
        else:
            raise AssertionError("the message box cannot be reached with Tab")
        c.keyboard.type("typed without a mouse")
        c.keyboard.press("Enter")
        d.get_by_role("link", name="carol", exact=True).first.click()
        d.get_by_role("list", name="Messages with carol").get_by_text(
            "typed without a mouse"
        ).wait_for()


def test_a_page_without_the_token_is_not_signed_in(browser: Any, tmp_path: Path) -> None:
    with daemons(tmp_path, "erin") as (erin,):
        context = browser.new_context()
        page = context.new_page()
        page.goto(erin.api_url + "/")
        page.get_by_role("heading", name="Not signed in").wait_for()
        # A forged token is refused the same way, and the page says how to sign in.
        page.goto(erin.api_url + "/#token=forged")
        page.reload()
        page.get_by_text("meshmsg ui").first.wait_for()


def test_a_photo_is_sent_and_previewed(browser: Any, tmp_path: Path) -> None:
    with daemons(tmp_path, "gina", "hugo") as (gina, hugo):
        g = open_ui(browser, gina.ui_url())
        u = open_ui(browser, hugo.ui_url())
        add_contact(g, own_code(u), "hugo")
        add_contact(u, own_code(g), "gina")
        g.get_by_role("link", name="hugo", exact=True).first.click()
        photo = tmp_path / "gate.png"
        photo.write_bytes(tiny_png())
        g.get_by_label("Attach file").set_input_files(str(photo))
        u.get_by_role("link", name="gina", exact=True).first.click()
        u.get_by_role("link", name="Download gate.png").wait_for()
        u.get_by_role("img", name="gate.png").wait_for()
        screenshot(u, "conversation-file")
