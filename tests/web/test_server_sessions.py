"""Sessions have a server-side record: logout, a password change and deactivation end them at once.

A copied session cookie is replayed in another, fresh browser (a new test client) to see
whether the server still honours it. The profile pages list the signed-in person's active
sessions, each with a "Sign out" button; nobody can end someone else's session.
"""
from __future__ import annotations

import html
import re
from datetime import datetime, timedelta, timezone
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select

from portal import clock
from tests.support.web import post_form

SESSION_COOKIE = "portal_session"
STAFF = {"email": "staff@portal.example", "password": "correct horse battery"}
CONTACT = {"email": "ana@acme.example", "password": "client password 1"}
_END_FORM = re.compile(r'action="(/(?:staff|portal)/profile/sessions/(\d+)/end)"')


def text_of(response) -> str:
    return html.unescape(response.get_data(as_text=True))


def location_path(response) -> str:
    return urlsplit(response.headers["Location"]).path


def cookie_of(client) -> str:
    cookie = client.get_cookie(SESSION_COOKIE)
    assert cookie is not None
    return cookie.value


def replay(app, value: str):
    """A fresh browser that has nothing but the copied cookie."""
    other = app.test_client()
    other.set_cookie(SESSION_COOKIE, value)
    return other


def staff_ok(client) -> bool:
    response = client.get("/staff/")
    return response.status_code == 200 and "Dashboard" in text_of(response)


def contact_ok(client) -> bool:
    response = client.get("/portal/")
    return response.status_code == 200 and "Hello, Ana Ribeiro" in text_of(response)


def sent_to_login(response, login_path: str) -> bool:
    return response.status_code in (302, 303) and location_path(response) == login_path \
        or response.status_code == 401


def signed_in_browser(app, path: str, credentials: dict):
    browser = app.test_client()
    response = post_form(browser, path, credentials)
    assert response.status_code == 302, response.get_data(as_text=True)
    return browser


def session_rows(kind: str):
    from portal.extensions import db
    from portal.models import UserSession

    db.session.expire_all()
    return db.session.scalars(
        select(UserSession).where(UserSession.principal_kind == kind).order_by(UserSession.id)).all()


def end_forms(page_html: str) -> list[tuple[str, int]]:
    return [(action, int(sid)) for action, sid in _END_FORM.findall(page_html)]


# Logout ends the session on the server ---------------------------------------------------

def test_a_staff_cookie_copied_before_logout_is_refused_after_it(app, make, client, auth):
    make.staff()
    assert auth.login_staff().status_code == 302
    assert staff_ok(client)
    copied = cookie_of(client)
    assert staff_ok(replay(app, copied)), "the copy works while the session lives"

    assert auth.logout_staff().status_code == 302

    response = replay(app, copied).get("/staff/")
    assert sent_to_login(response, "/staff/login"), (response.status_code, response.headers.get("Location"))
    assert "Dashboard" not in text_of(response)
    [row] = session_rows("staff")
    assert row.ended_at is not None and row.ended_reason == "logout"


def test_a_contact_cookie_copied_before_logout_is_refused_after_it(app, make, client, auth):
    make.contact_with_login()
    assert auth.login_contact().status_code == 302
    assert contact_ok(client)
    copied = cookie_of(client)

    assert auth.logout_contact().status_code == 302

    response = replay(app, copied).get("/portal/")
    assert sent_to_login(response, "/portal/login")
    assert "Hello, Ana Ribeiro" not in text_of(response)


def test_the_session_record_keeps_only_a_hash_of_the_token(app, make, client, auth):
    user = make.staff()
    auth.login_staff()
    [row] = session_rows("staff")
    assert len(row.token_hash) == 64 and row.ended_at is None
    assert (row.principal_kind, row.principal_id) == ("staff", user.id)
    assert row.ip == "127.0.0.1"
    assert row.token_hash not in cookie_of(client)


def test_an_unknown_session_token_is_a_signed_out_visitor(app, make, client, auth):
    from portal.extensions import db
    from portal.models import UserSession

    make.staff()
    auth.login_staff()
    copied = cookie_of(client)
    db.session.execute(UserSession.__table__.delete())
    db.session.commit()
    assert sent_to_login(replay(app, copied).get("/staff/"), "/staff/login")
    assert sent_to_login(client.get("/staff/"), "/staff/login")


# Password change, reset and deactivation ------------------------------------------------

def test_a_contact_password_change_ends_other_sessions_and_keeps_this_one(app, make, client, auth):
    make.contact_with_login()
    assert auth.login_contact().status_code == 302
    elsewhere = signed_in_browser(app, "/portal/login", CONTACT)
    elsewhere_cookie = cookie_of(elsewhere)
    assert contact_ok(elsewhere)

    response = post_form(client, "/portal/profile/password", {
        "current_password": CONTACT["password"], "password": "a brand new secret", "confirm": "a brand new secret"})
    assert response.status_code == 303
    assert contact_ok(client), "the session that changed the password carries on"
    assert not contact_ok(elsewhere)
    assert not contact_ok(replay(app, elsewhere_cookie))
    reasons = sorted(r.ended_reason or "active" for r in session_rows("contact"))
    assert reasons == ["active", "password_changed"]


def test_a_staff_password_change_ends_other_sessions_and_keeps_this_one(app, make, client, auth):
    make.staff()
    assert auth.login_staff().status_code == 302
    elsewhere = signed_in_browser(app, "/staff/login", STAFF)
    assert staff_ok(elsewhere)

    wrong = post_form(client, "/staff/profile/password", {
        "current_password": "not it at all", "password": "a brand new secret", "confirm": "a brand new secret"})
    assert wrong.status_code == 422
    assert staff_ok(elsewhere), "a refused change ends nothing"

    response = post_form(client, "/staff/profile/password", {
        "current_password": STAFF["password"], "password": "a brand new secret", "confirm": "a brand new secret"})
    assert response.status_code == 303
    assert staff_ok(client)
    assert not staff_ok(elsewhere)
    assert signed_in_browser(app, "/staff/login", {"email": STAFF["email"], "password": "a brand new secret"})


def test_a_password_reset_ends_every_session_and_signs_in_afresh(app, make, auth):
    from portal.extensions import db
    from portal.services import tokens

    user = make.staff()
    before = [signed_in_browser(app, "/staff/login", STAFF) for _ in range(2)]
    raw = tokens.issue("password_reset", user, timedelta(hours=1))
    db.session.commit()
    resetter = app.test_client()
    done = post_form(resetter, f"/staff/password/reset/{raw}",
                     {"password": "brand new password", "confirm": "brand new password"})
    assert done.status_code == 302
    assert staff_ok(resetter)
    assert not any(staff_ok(b) for b in before)
    reasons = [r.ended_reason for r in session_rows("staff")]
    assert reasons == ["password_reset", "password_reset", None]


def test_deactivating_a_staff_user_ends_their_sessions_at_once(app, make, client, auth):
    make.owner()
    sam = make.staff()
    assert auth.login_staff("owner@portal.example", "correct horse battery").status_code == 302
    sams_browser = signed_in_browser(app, "/staff/login", STAFF)
    sams_cookie = cookie_of(sams_browser)
    assert staff_ok(sams_browser)

    page = client.get("/staff/users")
    assert page.status_code == 200
    assert "staff@portal.example" in text_of(page)
    assert f'action="/staff/users/{sam.id}/deactivate"' in page.get_data(as_text=True)
    response = post_form(client, f"/staff/users/{sam.id}/deactivate")
    assert response.status_code in (302, 303)

    assert sent_to_login(sams_browser.get("/staff/"), "/staff/login")
    assert sent_to_login(replay(app, sams_cookie).get("/staff/"), "/staff/login")
    assert [r.ended_reason for r in session_rows("staff") if r.principal_id == sam.id] == ["deactivated"]
    assert staff_ok(client), "the owner's own session carries on"
    # A deactivated user cannot sign in again.
    again = post_form(app.test_client(), "/staff/login", STAFF)
    assert again.status_code == 200 and "don't match an account" in text_of(again)


def test_only_the_owner_may_deactivate_staff(app, make, client, auth):
    owner = make.owner()
    make.staff()
    owner_browser = signed_in_browser(app, "/staff/login", {"email": "owner@portal.example",
                                                             "password": "correct horse battery"})
    assert auth.login_staff().status_code == 302
    assert client.get("/staff/users").status_code == 403
    assert post_form(client, f"/staff/users/{owner.id}/deactivate").status_code == 403
    assert staff_ok(owner_browser)


def test_revoking_a_contacts_portal_access_ends_their_sessions(app, make, client, auth):
    contact = make.contact_with_login()
    contact_browser = signed_in_browser(app, "/portal/login", CONTACT)
    copied = cookie_of(contact_browser)
    make.owner()
    assert auth.login_staff("owner@portal.example", "correct horse battery").status_code == 302
    response = post_form(client, f"/staff/clients/{contact.client_id}/contacts/{contact.id}/revoke")
    assert response.status_code == 302
    assert sent_to_login(replay(app, copied).get("/portal/"), "/portal/login")
    assert [r.ended_reason for r in session_rows("contact")] == ["access_revoked"]


# Idle timeout and absolute lifetime --------------------------------------------------------

def test_last_seen_is_written_at_most_once_a_minute(app, make, client, auth):
    make.staff()
    start = datetime.now(timezone.utc).replace(microsecond=0)
    with clock.frozen(start):
        auth.login_staff()
    with clock.frozen(start + timedelta(seconds=30)):
        assert staff_ok(client)
    [row] = session_rows("staff")
    assert row.last_seen_at == start
    with clock.frozen(start + timedelta(seconds=90)):
        assert staff_ok(client)
    [row] = session_rows("staff")
    assert row.last_seen_at == start + timedelta(seconds=90)


def test_an_idle_session_is_ended_on_the_server(app, make, client, auth):
    make.staff()
    start = datetime.now(timezone.utc).replace(microsecond=0)
    with clock.frozen(start):
        auth.login_staff()
        copied = cookie_of(client)
    with clock.frozen(start + app.config["IDLE_TIMEOUT"] + timedelta(minutes=2)):
        response = replay(app, copied).get("/staff/")
        assert sent_to_login(response, "/staff/login")
        assert "expired=1" in response.headers["Location"]
    [row] = session_rows("staff")
    assert row.ended_reason == "idle"
    # Back within the idle window, the ended session stays ended.
    with clock.frozen(start + timedelta(minutes=1)):
        assert not staff_ok(client)


def test_a_session_ends_after_its_absolute_lifetime_however_busy(app, make, client, auth):
    make.staff()
    lifetime = app.config["SESSION_ABSOLUTE_LIFETIME"]
    step = app.config["IDLE_TIMEOUT"] - timedelta(minutes=5)
    start = datetime.now(timezone.utc).replace(microsecond=0)
    with clock.frozen(start):
        auth.login_staff()
    at = start
    while at + step < start + lifetime:
        at += step
        with clock.frozen(at):
            assert staff_ok(client)
    with clock.frozen(start + lifetime + timedelta(minutes=1)):
        assert sent_to_login(client.get("/staff/"), "/staff/login")
    [row] = session_rows("staff")
    assert row.ended_reason == "expired"


# The profile's session list ----------------------------------------------------------------

def test_the_staff_profile_lists_sessions_and_signs_out_another(app, make, client, auth):
    make.staff()
    assert auth.login_staff().status_code == 302
    phone = app.test_client()
    phone.environ_base["HTTP_USER_AGENT"] = (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1")
    assert post_form(phone, "/staff/login", STAFF).status_code == 302
    phone_cookie = cookie_of(phone)

    page = client.get("/staff/profile")
    assert page.status_code == 200
    body = text_of(page)
    assert "Sam Staff" in body and "staff@portal.example" in body
    assert body.count("This session") == 1
    assert "Safari on iOS" in body
    forms = end_forms(page.get_data(as_text=True))
    assert len(forms) == 2
    mine, phones = session_rows("staff")
    assert {sid for _, sid in forms} == {mine.id, phones.id}
    assert 'href="/staff/profile"' in text_of(client.get("/staff/")), "the nav links the profile"

    # GET changes nothing.
    assert client.get(f"/staff/profile/sessions/{phones.id}/end").status_code == 405
    assert staff_ok(phone)

    response = post_form(client, f"/staff/profile/sessions/{phones.id}/end")
    assert response.status_code in (302, 303) and location_path(response) == "/staff/profile"
    assert not staff_ok(phone)
    assert not staff_ok(replay(app, phone_cookie))
    assert staff_ok(client)
    assert len(end_forms(client.get("/staff/profile").get_data(as_text=True))) == 1
    assert [r.ended_reason for r in session_rows("staff")] == [None, "signed_out"]


def test_sign_out_all_other_sessions(app, make, client, auth):
    make.staff()
    assert auth.login_staff().status_code == 302
    others = [signed_in_browser(app, "/staff/login", STAFF) for _ in range(2)]
    assert len(end_forms(client.get("/staff/profile").get_data(as_text=True))) == 3
    response = post_form(client, "/staff/profile/sessions/end-others")
    assert response.status_code in (302, 303)
    assert staff_ok(client)
    assert not any(staff_ok(other) for other in others)


def test_signing_out_this_session_from_the_list_signs_out(app, make, client, auth):
    make.staff()
    auth.login_staff()
    copied = cookie_of(client)
    [(action, _)] = end_forms(client.get("/staff/profile").get_data(as_text=True))
    response = post_form(client, action)
    assert response.status_code in (302, 303) and location_path(response) == "/staff/login"
    assert not staff_ok(client)
    assert not staff_ok(replay(app, copied))


def test_a_staff_user_cannot_sign_out_someone_elses_session(app, make, client, auth):
    owner = make.owner()
    make.staff()
    make.contact_with_login()
    owner_browser = signed_in_browser(app, "/staff/login", {"email": "owner@portal.example",
                                                             "password": "correct horse battery"})
    contact_browser = signed_in_browser(app, "/portal/login", CONTACT)
    assert auth.login_staff().status_code == 302
    [owner_session] = [r for r in session_rows("staff") if r.principal_id == owner.id]
    [contact_session] = session_rows("contact")

    for sid in (owner_session.id, contact_session.id, 999999):
        response = post_form(client, f"/staff/profile/sessions/{sid}/end")
        assert response.status_code == 404
    assert staff_ok(owner_browser) and contact_ok(contact_browser)
    # The owner's list does not show Sam's session either.
    owner_forms = end_forms(owner_browser.get("/staff/profile").get_data(as_text=True))
    assert [sid for _, sid in owner_forms] == [owner_session.id]


def test_the_portal_profile_lists_sessions_and_signs_out_another(app, make, client, auth):
    make.contact_with_login()
    assert auth.login_contact().status_code == 302
    other = signed_in_browser(app, "/portal/login", CONTACT)
    page = client.get("/portal/profile")
    assert page.status_code == 200
    forms = end_forms(page.get_data(as_text=True))
    assert len(forms) == 2 and text_of(page).count("This session") == 1
    mine, others = session_rows("contact")
    response = post_form(client, f"/portal/profile/sessions/{others.id}/end")
    assert response.status_code in (302, 303)
    assert not contact_ok(other) and contact_ok(client)
    # A contact may not end a staff session through the portal.
    make.staff()
    staff_browser = signed_in_browser(app, "/staff/login", STAFF)
    [staff_session] = session_rows("staff")
    assert post_form(client, f"/portal/profile/sessions/{staff_session.id}/end").status_code == 404
    assert staff_ok(staff_browser)


# ?next= on login ------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["staff", "contact"])
@pytest.mark.parametrize("target", [
    "/staff/%0d%0aSet-Cookie:%20evil=1", "/portal/%0d%0aSet-Cookie:%20evil=1", "%0d%0a",
    "/staff/\r\nLocation: https://evil.example", "/portal/\r\nX: y", "\r\n",
    "//evil.example", "https://evil.example", "/\\evil", "/staff/\\evil", "/portal/\\evil",
    "/staff//evil.example", "/\tevil", "/staff/\x00",
])
def test_login_refuses_a_dangerous_next_and_goes_home(kind, target, app, make, client):
    if kind == "staff":
        make.staff()
        path, credentials, home = "/staff/login", STAFF, "/staff/"
    else:
        make.contact_with_login()
        path, credentials, home = "/portal/login", CONTACT, "/portal/"
    if "%" in target:
        url, query = f"{path}?next={target}", None
    else:
        url, query = path, {"next": target}
    page = client.get(url, query_string=query)
    assert page.status_code == 200
    response = post_form(client, url, credentials, query_string=query)
    assert response.status_code == 302, response.status_code
    location = response.headers["Location"]
    assert "\r" not in location and "\n" not in location
    parts = urlsplit(location)
    assert parts.netloc in ("", "localhost")
    assert parts.path == home and not parts.query


def test_a_good_next_still_lands_where_the_user_was_going(make, client):
    make.staff()
    response = post_form(client, "/staff/login?next=/staff/invoices?status=open", STAFF)
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/staff/invoices?status=open")
