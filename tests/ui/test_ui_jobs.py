"""The jobs page in a real browser: sign in with a token, and rows that change without a reload."""
from __future__ import annotations

from playwright.sync_api import expect

from conftest import Melon, sign_in


def test_sign_in_then_a_job_goes_from_pending_to_running_without_a_reload(tcp_melon: Melon, page) -> None:
    melon = tcp_melon
    page.goto(melon.url + "/")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.get_by_label("Token").fill("melon_000000000000_" + "x" * 43)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#signin-error")).to_contain_text("not valid")
    sign_in(page, melon, melon.token())
    expect(page.locator("#who")).to_contain_text("root")
    page.evaluate("window.__noReload = true")
    jid = melon.submit("-H", "-J", "watched", "-t", "0:30", "--wrap", "sleep 30")
    row = page.locator(f'tr[data-job="{jid}"]')
    expect(row).to_contain_text("PENDING")
    expect(row).to_contain_text("(JobHeldUser)")
    melon.run("mrelease", str(jid))
    expect(row).to_contain_text("RUNNING")
    expect(row).to_contain_text("local")
    assert page.evaluate("window.__noReload") is True  # the same page: the row changed in place
    melon.run("mcancel", str(jid))
    expect(row).to_have_count(0)  # gone from the pending-and-running view once it ended


def test_the_session_cookie_is_httponly_and_changes_need_the_csrf_header(tcp_melon: Melon, page) -> None:
    melon = tcp_melon
    sign_in(page, melon, melon.token())
    cookie = next(c for c in page.context.cookies() if c["name"] == "melon_session")
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict"
    assert page.evaluate("document.cookie") == ""  # no script can read it
    held = melon.submit("-H", "--wrap", "true")
    forged = page.evaluate(f"""fetch('/api/v1/jobs/{held}/cancel', {{method: 'POST'}})
                               .then(r => r.json().then(b => [r.status, b.error.message]))""")
    assert forged[0] == 403 and "X-Melon-CSRF" in forged[1]
    assert melon.job(held)["state"] == "PD"  # nothing changed
    done = page.evaluate(f"""fetch('/api/v1/jobs/{held}/cancel', {{method: 'POST', headers: {{'X-Melon-CSRF': '1'}}}})
                             .then(r => r.status)""")
    assert done == 200 and melon.job(held)["state"] == "CA"
