"""Journeys in a real Chromium: what staff and clients see and do in the browser."""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.support.browser import BRAND, BRAND_RGB, Problems, sign_in

pytestmark = pytest.mark.browser


def test_staff_signs_in_sees_dashboard_and_signs_out(page, problems, make):
    make.business(name="Tidewater Studio", brand_color=BRAND)
    user = make.staff()

    page.goto("/staff/")
    expect(page).to_have_url(re.compile(r"/staff/login\?next="))
    page.get_by_label("Email").fill(user.email)
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("That email and password don't match an account.")

    page.get_by_label("Password").fill(user.plain_password)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/staff/$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Dashboard")
    nav = page.locator("header nav")
    for name in ("Dashboard", "Clients", "Emails", "Settings"):
        expect(nav.get_by_role("link", name=name, exact=True)).to_be_visible()
    expect(nav.get_by_role("link", name="Dashboard", exact=True)).to_have_attribute("aria-current", "page")
    expect(page.locator(".topbar .brand-name")).to_have_text("Tidewater Studio")

    nav.get_by_role("link", name="Clients", exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Clients")

    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/staff/login$"))
    expect(page.get_by_text("You are signed out.")).to_be_visible()
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()

    # Signed out means signed out: the dashboard sends us back to the login page.
    page.goto("/staff/")
    expect(page).to_have_url(re.compile(r"/staff/login"))


def test_client_contact_sees_branded_portal(page, problems, make):
    make.business(name="Tidewater Studio", brand_color=BRAND)
    contact = make.contact_with_login(client_name="Acme Robotics Ltd")

    page.goto("/portal/login")
    expect(page.locator(".auth-header .brand-name")).to_have_text("Tidewater Studio")
    page.get_by_label("Email").fill(contact.email)
    page.get_by_label("Password").fill(contact.plain_password)
    page.get_by_role("button", name="Sign in").click()

    expect(page).to_have_url(re.compile(r"/portal/$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Hello, Ana Ribeiro")
    band = page.locator(".brand-band")
    expect(band).to_contain_text("Tidewater Studio")
    expect(band).to_contain_text("Acme Robotics Ltd")
    expect(page.locator(".topbar .brand-name")).to_have_text("Tidewater Studio")
    expect(page).to_have_title(re.compile("Tidewater Studio"))

    # to_have_css retries until the stylesheets have loaded (the URL can change before they do).
    expect(band).to_have_css("background-color", BRAND_RGB)
    # Text on the band stays readable: white on this dark teal.
    expect(band.locator("h1")).to_have_css("color", "rgb(255, 255, 255)")

    # A client is not staff.
    problems.expect_error_status(403, "/staff/")
    response = page.goto("/staff/")
    assert response.status == 403

    page.goto("/portal/")
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/portal/login$"))


def test_staff_live_search_updates_rows_in_place(page, problems, make):
    make.client(name="Acme Robotics Ltd")
    make.client(name="Bluebird Coffee Co.", contacts=[{"name": "Jamie Park", "email": "jamie@bluebird.example"}])
    make.client(name="Northwind Architects", contacts=[{"name": "Rui Costa", "email": "rui@northwind.example"}])
    user = make.staff()
    sign_in(page, "staff", user.email, user.plain_password)
    expect(page.get_by_role("heading", level=1)).to_have_text("Dashboard")

    page.goto("/staff/clients")
    rows = page.locator("#client-rows tbody tr")
    expect(rows).to_have_count(3)
    page.evaluate("window.__noReload = 'still here'")

    with page.expect_response(lambda r: "/staff/clients?q=" in r.url and r.request.headers.get("hx-request") == "true") as answer:
        page.get_by_label("Search clients").press_sequentially("blue", delay=30)
    assert answer.value.status == 200

    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Bluebird Coffee Co.")
    expect(page).to_have_url(re.compile(r"/staff/clients\?q=blue$"))
    assert page.evaluate("window.__noReload") == "still here"

    page.get_by_label("Search clients").fill("zzz")
    expect(page.locator("#client-rows")).to_contain_text("No client matches “zzz”.")
    assert page.evaluate("window.__noReload") == "still here"

    # Reloading the pushed URL gives the full page with the same search.
    page.reload()
    expect(page.get_by_label("Search clients")).to_have_value("zzz")
    expect(page.get_by_role("heading", level=1)).to_have_text("Clients")


def test_staff_portal_link_signs_contact_in_from_a_fresh_browser(page, problems, make, browser, live_server):
    make.business(name="Tidewater Studio", brand_color=BRAND)
    client = make.client(name="Acme Robotics Ltd")
    user = make.owner()  # only the owner sees a sign-in link (other staff have it emailed)
    sign_in(page, "staff", user.email, user.plain_password)
    expect(page.get_by_role("heading", level=1)).to_have_text("Dashboard")

    page.goto("/staff/clients")
    page.get_by_role("link", name="Acme Robotics Ltd").click()
    expect(page).to_have_url(re.compile(rf"/staff/clients/{client.id}$"))
    page.wait_for_load_state("load")  # htmx (a deferred script) has taken over the page's forms
    page.evaluate("window.__noReload = 'still here'")

    page.get_by_role("button", name="Portal link").click()
    link_box = page.get_by_label("Portal sign-in link")
    expect(link_box).to_be_visible()
    expect(page.locator("#portal-link")).to_contain_text("Sign-in link for Ana Ribeiro")
    assert page.evaluate("window.__noReload") == "still here"
    link = link_box.input_value()
    assert link.startswith(f"{live_server}/portal/link/")

    fresh = browser.new_context(base_url=live_server)
    try:
        other = problems.watch(fresh.new_page())
        other.set_default_timeout(10_000)
        other.goto(link)
        expect(other.get_by_role("heading", level=1)).to_have_text("Sign in to your billing portal")
        other.get_by_role("button", name="Continue to the portal").click()
        expect(other).to_have_url(re.compile(r"/portal/$"))
        expect(other.get_by_role("heading", level=1)).to_have_text("Hello, Ana Ribeiro")
        expect(other.locator(".brand-band")).to_contain_text("Acme Robotics Ltd")

        # The link signs in once.
        second = fresh.new_page()
        response = second.goto(link)
        assert response.status == 410
    finally:
        fresh.close()

    # Staff's own session is untouched by the contact signing in elsewhere.
    page.reload()
    expect(page.get_by_role("heading", level=1)).to_have_text("Acme Robotics Ltd")
    expect(page.locator("main")).to_contain_text("Contact signed in")


def test_the_watcher_catches_csp_violations(page, make):
    """The check the journeys rely on can fail: an inline script breaks the CSP and is reported."""
    found = Problems()
    found.watch(page)
    page.goto("/portal/login")
    page.evaluate("""() => {
        const script = document.createElement('script');
        script.textContent = 'window.__ran = true';
        document.body.appendChild(script);
    }""")
    page.wait_for_timeout(200)
    assert page.evaluate("window.__ran === undefined")
    assert any("script-src" in m for m in found.messages), found.messages
