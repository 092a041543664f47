"""Groups, message requests, the organisation directory and unread counts in a real browser.

As in test_web_ui.py, every step goes through what a person sees and uses (accessible names,
no API calls behind the page's back); the daemons are real ``meshmsg run`` processes on
loopback. One daemon restart (the unread counts) and the organisation set-up use the CLI, as
a person would.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.browser.harness import DaemonProcess, daemons, free_port, screenshot
from tests.browser.test_web_ui import add_contact, open_ui, own_code

pytestmark = pytest.mark.timeout(240)


def accept_dialogs(page: Any) -> None:
    """Confirm every confirm() (remove a member, leave a group) as a person clicking OK."""
    page.on("dialog", lambda dialog: dialog.accept())


def conversation_link(page: Any, name: str) -> Any:
    return page.get_by_role("navigation", name="Conversation list").get_by_role(
        "link", name=name, exact=True
    )


def list_item(page: Any, name: str) -> Any:
    link = page.get_by_role("link", name=name, exact=True)
    return page.locator("#conversation-list li").filter(has=link)


def tab_to(page: Any, focused: str, presses: int = 40) -> None:
    """Press Tab until the script ``focused`` is true of the focused element."""
    for _ in range(presses):
        page.keyboard.press("Tab")
        if page.evaluate(focused):
            return
    raise AssertionError(f"not reached with Tab: {focused}")


def send(page: Any, *texts: str) -> None:
    for text in texts:
        page.get_by_role("textbox", name="Message").fill(text)
        page.get_by_role("button", name="Send").click()
        page.locator(".message.out").filter(has_text=text).wait_for()


def test_a_group_is_made_written_to_and_changed_in_the_browser(
    browser: Any, tmp_path: Path
) -> None:
    with daemons(tmp_path, "alice", "bob", "carol") as (alice, bob, carol):
        a, b, c = (open_ui(browser, d.ui_url()) for d in (alice, bob, carol))
        accept_dialogs(a)
        codes = {name: own_code(page) for name, page in (("a", a), ("b", b), ("c", c))}
        add_contact(a, codes["b"], "bob")
        add_contact(a, codes["c"], "carol")
        add_contact(b, codes["a"], "alice")
        add_contact(b, codes["c"], "carol")
        add_contact(c, codes["a"], "alice")
        add_contact(c, codes["b"], "bob")

        # Made with the keyboard only: Tab to "New group", type the name, Space on each member.
        a.evaluate("location.hash = '#/'; document.activeElement.blur()")
        tab_to(a, "document.activeElement.textContent === 'New group'")
        a.keyboard.press("Enter")
        a.get_by_role("textbox", name="Group name").wait_for()
        assert a.evaluate("document.activeElement.id") == "group-name"
        a.keyboard.type("North gate team")
        for _member in ("bob", "carol"):  # the contacts in name order
            a.keyboard.press("Tab")
            a.keyboard.press("Space")
        a.keyboard.press("Tab")
        assert a.evaluate("document.activeElement.textContent") == "Create group"
        a.keyboard.press("Enter")
        a.get_by_role("heading", name="North gate team").wait_for()
        assert "3 members" in a.locator(".conversation header").inner_text()

        a.get_by_role("textbox", name="Message").fill("Team: gate closes at 18:00")
        a.get_by_role("button", name="Send").click()
        sent = a.locator(".message.out").filter(has_text="gate closes at 18:00")
        sent.wait_for()

        for page in (b, c):  # the group and its message arrive in the others' browsers
            row = list_item(page, "North gate team")
            row.get_by_label("1 unread").wait_for()
            assert "gate closes at 18:00" in row.inner_text()
            conversation_link(page, "North gate team").click()
            inbox = page.get_by_role("list", name="Messages in North gate team")
            inbox.get_by_text("Team: gate closes at 18:00").wait_for()
            assert "alice" in inbox.inner_text()
            row.get_by_label("1 unread").wait_for(state="detached")
        # Both opened it: their read receipts come back, aggregated for the sender.
        sent.get_by_text("read by 2 of 2").wait_for()
        sent.get_by_text("read by 2 of 2").click()
        by_member = sent.get_by_role("list", name="Receipts by member").inner_text()
        assert "bob: read" in by_member
        assert "carol: read" in by_member

        # A draft survives a live update of the conversation it is typed in.
        c.get_by_role("textbox", name="Message").fill("draft, not sent yet")
        b.get_by_role("textbox", name="Message").fill("Bob here, on my way")
        b.get_by_role("button", name="Send").click()
        c.get_by_role("list", name="Messages in North gate team").get_by_text(
            "Bob here, on my way"
        ).wait_for()
        assert c.get_by_role("textbox", name="Message").input_value() == "draft, not sent yet"
        a.get_by_role("list", name="Messages in North gate team").get_by_text(
            "Bob here, on my way"
        ).wait_for()
        a.get_by_text("Members (3)").click()
        a.locator("#toast").wait_for(state="hidden")
        sent.get_by_text("read by 2 of 2").click()
        sent.get_by_role("list", name="Receipts by member").wait_for()
        screenshot(a, "group")

        # The admin removes carol: a new epoch, two members, on alice's and bob's screens.
        epoch = int(re.search(r"epoch (\d+)", a.locator(".conversation header").inner_text())[1])
        a.get_by_role("button", name="Remove carol").click()
        a.get_by_text("Members (2)").wait_for()
        assert f"epoch {epoch + 1}" in a.locator(".conversation header").inner_text()
        b.get_by_text("Members (2)").wait_for()
        # ...and adds her back; then bob leaves.
        a.get_by_role("combobox", name="Contact to add").select_option(label="carol")
        a.get_by_role("button", name="Add member").click()
        a.get_by_text("Members (3)").wait_for()
        a.get_by_role("button", name="Make bob an admin").click()
        # (admins are listed in key order: either may come first)
        a.locator(".conversation header").get_by_text(
            re.compile("admins: (you, bob|bob, you) ")
        ).wait_for()
        b.locator(".conversation header").get_by_text(
            re.compile("admins: (alice, you|you, alice) ")
        ).wait_for()
        accept_dialogs(b)
        b.get_by_role("button", name="Leave group").click()
        b.get_by_text("You are no longer a member of this group.").wait_for()
        a.get_by_text("Members (2)").wait_for()


def test_unread_counts_are_the_same_after_the_daemon_restarts(browser: Any, tmp_path: Path) -> None:
    with daemons(tmp_path, "erin", "finn") as (erin, finn):
        e = open_ui(browser, erin.ui_url())
        f = open_ui(browser, finn.ui_url())
        add_contact(e, own_code(f), "finn")
        add_contact(f, own_code(e), "erin")
        conversation_link(e, "finn").click()
        send(e, "message one", "message two")
        row = list_item(f, "erin")
        row.get_by_label("2 unread").wait_for()
        conversation_link(f, "erin").click()  # read: the count goes
        f.get_by_role("list", name="Messages with erin").get_by_text("message two").wait_for()
        row.get_by_label("2 unread").wait_for(state="detached")
        f.get_by_role("link", name="Status").click()  # away from the conversation
        send(e, "message three", "message four", "message five")
        row.get_by_label("3 unread").wait_for()
        # A group's count too (the core keeps it on each group message, not read-marks).
        e.get_by_role("link", name="New group").click()
        e.get_by_role("textbox", name="Group name").fill("Night shift")
        e.get_by_role("checkbox", name="finn").check()
        e.get_by_role("button", name="Create group").click()
        e.get_by_role("heading", name="Night shift").wait_for()
        send(e, "shift starts at 22:00")
        list_item(f, "Night shift").get_by_label("1 unread").wait_for()

        finn.stop()
        finn.start()
        again = open_ui(browser, finn.ui_url())
        list_item(again, "erin").get_by_label("3 unread").wait_for()
        assert "message five" in list_item(again, "erin").inner_text()
        list_item(again, "Night shift").get_by_label("1 unread").wait_for()


def test_message_requests_are_accepted_declined_or_blocked(browser: Any, tmp_path: Path) -> None:
    with daemons(tmp_path, "gina", "hugo", "ivy") as (gina, hugo, ivy):
        g = open_ui(browser, gina.ui_url())
        u = open_ui(browser, hugo.ui_url())
        i = open_ui(browser, ivy.ui_url())
        code = own_code(u)
        for page, text in ((g, "Hello Hugo, Gina from logistics"), (i, "buy cheap radios")):
            add_contact(page, code, "hugo")  # hugo has not added them: a request each
            conversation_link(page, "hugo").click()
            page.get_by_role("textbox", name="Message").fill(text)
            page.get_by_role("button", name="Send").click()
        u.get_by_role("link", name="Requests (2)").click()
        u.get_by_text("Hello Hugo, Gina from logistics").wait_for()
        u.get_by_text("buy cheap radios").wait_for()
        screenshot(u, "requests")
        # Neither is a conversation yet.
        assert u.locator("#conversation-list li").count() == 0

        # Declined: gone, but she may write again (a new request); then blocked for good.
        spam = u.get_by_role("region").filter(has_text="buy cheap radios")
        spam.get_by_role("button", name="Decline").click()
        u.get_by_text("buy cheap radios").wait_for(state="detached")
        send(i, "radios, half price")
        again = u.get_by_role("region").filter(has_text="radios, half price")
        again.get_by_role("button", name="Block").click()
        u.get_by_text("radios, half price").wait_for(state="detached")
        gina_request = u.get_by_role("region").filter(has_text="Gina from logistics")
        gina_request.get_by_role("textbox", name="Their name").fill("gina")
        gina_request.get_by_role("button", name="Accept").click()
        u.get_by_text("No message requests.").wait_for()
        assert u.get_by_role("link", name="Requests", exact=True).is_visible()
        # Accepted: a contact now, under the name given, her message in the conversation.
        conversation_link(u, "gina").click()
        u.get_by_role("list", name="Messages with gina").get_by_text(
            "Hello Hugo, Gina from logistics"
        ).wait_for()


def test_the_directory_is_searched_and_its_mark_shown_everywhere(
    browser: Any, tmp_path: Path
) -> None:
    jane = DaemonProcess("jane", tmp_path / "jane", f"127.0.0.1:{free_port()}")
    kim = DaemonProcess("kim", tmp_path / "kim", f"127.0.0.1:{free_port()}")
    try:
        jane.init([kim.listen])
        kim.init([jane.listen])
        admin = str(tmp_path / "org-admin")
        org_code = jane.cli("org", "init", "Crisis Staff", "--admin-dir", admin).split()[-1]
        kim_code = next(w for w in kim.cli("id", "--no-qr").split() if w.startswith("MM1:"))
        jane.cli("org", "sign", kim_code, "--name", "Kim Duty", "--unit", "Logistics",
                 "--role", "duty officer", "--admin-dir", admin)  # fmt: skip
        published = tmp_path / "crisis.mmdir"
        jane.cli("org", "publish", "--out", str(published), "--admin-dir", admin)
        jane.cli("org", "join", org_code)
        jane.cli("org", "import", str(published))
        jane.start()
        kim.start()
        page = open_ui(browser, jane.ui_url())
        page.get_by_role("link", name="Contacts").click()
        page.get_by_role("searchbox", name="Search the directory").fill("duty")
        page.get_by_role("button", name="Search", exact=True).click()
        results = page.get_by_role("table", name="Directory results")
        results.get_by_role("cell", name="Kim Duty", exact=True).wait_for()
        results.get_by_role("button", name="Add Kim Duty as a contact").click()
        mark = "verified by Crisis Staff"
        page.get_by_role("row", name=re.compile("Kim Duty")).get_by_text(mark).first.wait_for()
        assert mark in list_item(page, "Kim Duty").inner_text()  # the conversation list
        page.locator("main").evaluate("main => { main.scrollTop = main.scrollHeight; }")
        page.locator("#toast").wait_for(state="hidden")
        screenshot(page, "directory")
        conversation_link(page, "Kim Duty").click()
        page.locator(".conversation header").get_by_text(mark).wait_for()
    finally:
        jane.stop()
        kim.stop()
