"""Staff manage clients and their contacts through the staff pages."""
from __future__ import annotations

import html
import re

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from portal.extensions import db
from portal.models import Client, Contact, Event
from tests.support.web import post_form


NEW_CLIENT = {
    "name": "Harbour Lights Ltd",
    "kind": "company",
    "email": "Accounts@Harbour.example",
    "phone": "+44 20 0000 0000",
    "address": "1 Quay Street\nBristol",
    "tax_id": "GB999",
    "currency": "gbp",
    "notes": "Pays by transfer",
    "contact_name": "Nia Lewis",
    "contact_email": "nia@harbour.example",
    "contact_receives_invoices": "y",
}


def fresh():
    """A session of its own: what is really in the database, not what the test's session remembers."""
    return Session(db.engine)


def count(model) -> int:
    with fresh() as s:
        return s.scalar(select(func.count()).select_from(model))


def events(type_: str | None = None) -> list[Event]:
    with fresh() as s:
        query = select(Event).order_by(Event.id)
        if type_:
            query = query.where(Event.type == type_)
        rows = s.scalars(query).all()
        s.expunge_all()
        return rows


def text_of(response) -> str:
    return response.get_data(as_text=True)


def activity(page: str) -> str:
    """The Activity section of a client page."""
    match = re.search(r"<h2>Activity</h2>(.*?)</section>", page, re.S)
    assert match, "no Activity section on the client page"
    return match.group(1)


def field_error(page: str, field_id: str) -> str:
    match = re.search(rf'id="{field_id}-error"[^>]*>([^<]*)<', page)
    return html.unescape(match.group(1)).strip() if match else ""


# Creating ------------------------------------------------------------------------------

def test_staff_creates_client_with_first_contact(staff_client):
    response = post_form(staff_client, "/staff/clients/new", NEW_CLIENT)
    assert response.status_code == 302
    with fresh() as s:
        client = s.scalars(select(Client)).one()
        assert client.name == "Harbour Lights Ltd"
        assert client.email == "accounts@harbour.example"
        assert client.currency == "GBP"
        assert [(c.name, c.email, c.receives_invoices) for c in client.contacts] == [
            ("Nia Lewis", "nia@harbour.example", True)]
        client_id = client.id
    assert response.headers["Location"].endswith(f"/staff/clients/{client_id}")

    page = staff_client.get(response.headers["Location"])
    body = text_of(page)
    assert page.status_code == 200
    assert "Client Harbour Lights Ltd added." in body
    assert "<h1>Harbour Lights Ltd</h1>" in body
    assert "Nia Lewis" in body and "nia@harbour.example" in body
    assert "Tax ID GB999" in body
    assert "Currency: GBP" in body


def test_created_client_is_listed(staff_client):
    post_form(staff_client, "/staff/clients/new", NEW_CLIENT)
    body = text_of(staff_client.get("/staff/clients"))
    assert "Harbour Lights Ltd" in body
    assert "Nia Lewis &lt;nia@harbour.example&gt;" in body


@pytest.mark.parametrize("change, field, message", [
    ({"name": ""}, "name", "Enter the client's name."),
    ({"name": "   "}, "name", "Enter the client's name."),
    ({"contact_email": "not-an-email"}, "contact_email", "Invalid email address."),
    ({"contact_email": ""}, "contact_email", "Enter the contact's email."),
    ({"contact_name": ""}, "contact_name", "Enter a contact's name."),
    ({"email": "billing@"}, "email", "Invalid email address."),
    ({"currency": "EURO"}, "currency", "Use a three-letter code, like EUR."),
])
def test_bad_new_client_rerenders_with_field_error_and_creates_nothing(staff_client, change, field, message):
    response = post_form(staff_client, "/staff/clients/new", {**NEW_CLIENT, **change})
    body = text_of(response)
    assert response.status_code == 422
    assert "Please correct the fields marked below." in body
    assert field_error(body, field) == message
    assert f'id="{field}"' in body and 'aria-invalid="true"' in body
    # What the user typed is kept.
    if field != "contact_name":
        assert 'value="Nia Lewis"' in body
    assert count(Client) == 0
    assert count(Contact) == 0
    assert [e.type for e in events() if e.subject_type in ("client", "contact")] == []


# Editing -------------------------------------------------------------------------------

def test_staff_edits_client(staff_client, make):
    client = make.client(name="Acme Ltd")
    form = {"name": "Acme Holdings", "kind": "company", "email": "ap@acme.example", "phone": "",
            "address": "9 Mill Road", "tax_id": "", "currency": "eur", "notes": ""}
    response = post_form(staff_client, f"/staff/clients/{client.id}/edit", form)
    assert response.status_code == 302
    with fresh() as s:
        saved = s.get(Client, client.id)
        assert (saved.name, saved.email, saved.address, saved.currency) == (
            "Acme Holdings", "ap@acme.example", "9 Mill Road", "EUR")
    body = text_of(staff_client.get(f"/staff/clients/{client.id}"))
    assert "Client saved." in body
    assert "<h1>Acme Holdings</h1>" in body
    [updated] = events("client.updated")
    assert updated.before["name"] == "Acme Ltd" and updated.after["name"] == "Acme Holdings"
    assert updated.actor_kind == "staff" and updated.actor_label == "staff@portal.example"
    assert "Client updated" in activity(body)


def test_bad_client_edit_changes_nothing(staff_client, make):
    client = make.client(name="Acme Ltd")
    before = len(events())
    response = post_form(staff_client, f"/staff/clients/{client.id}/edit",
                         {"name": "", "kind": "company", "email": "nope"})
    body = text_of(response)
    assert response.status_code == 422
    assert field_error(body, "name") == "Enter the client's name."
    assert field_error(body, "email") == "Invalid email address."
    with fresh() as s:
        assert s.get(Client, client.id).name == "Acme Ltd"
    assert len(events()) == before


def test_edit_form_shows_current_values(staff_client, make):
    client = make.client(name="Acme Ltd")
    body = text_of(staff_client.get(f"/staff/clients/{client.id}/edit"))
    assert 'value="Acme Ltd"' in body


# Contacts ------------------------------------------------------------------------------

def test_add_edit_and_remove_contacts(staff_client, make):
    client = make.client(name="Acme Ltd")
    first = client.contacts[0]

    response = post_form(staff_client, f"/staff/clients/{client.id}/contacts/new",
                         {"name": "Bo Chen", "email": "Bo@Acme.example", "phone": "123"})
    assert response.status_code == 302
    with fresh() as s:
        added = s.scalars(select(Contact).where(Contact.name == "Bo Chen")).one()
        assert added.client_id == client.id
        assert added.email == "bo@acme.example"
        assert added.receives_invoices is False  # checkbox left unticked
        added_id = added.id
    body = text_of(staff_client.get(f"/staff/clients/{client.id}"))
    assert "Contact added." in body and "bo@acme.example" in body

    response = post_form(staff_client, f"/staff/clients/{client.id}/contacts/{added_id}/edit",
                         {"name": "Bo Chen-Li", "email": "bo@acme.example", "receives_invoices": "y"})
    assert response.status_code == 302
    with fresh() as s:
        edited = s.get(Contact, added_id)
        assert (edited.name, edited.receives_invoices) == ("Bo Chen-Li", True)
    assert "Bo Chen-Li" in text_of(staff_client.get(f"/staff/clients/{client.id}"))

    response = post_form(staff_client, f"/staff/clients/{client.id}/contacts/{first.id}/delete")
    assert response.status_code == 302
    body = text_of(staff_client.get(f"/staff/clients/{client.id}"))
    assert "Contact removed." in body
    assert "ana@acme.example" not in body
    with fresh() as s:
        assert s.get(Contact, first.id) is None
        assert [c.id for c in s.get(Client, client.id).contacts] == [added_id]

    timeline = activity(body)
    for kind in ("Client created", "Contact created", "Contact updated", "Contact removed"):
        assert kind in timeline, f"{kind} missing from the client's Activity"
    types = [e.type for e in events() if e.subject_type in ("client", "contact")]
    assert types == ["client.created", "contact.created", "contact.created", "contact.updated",
                     "contact.removed"]
    removed = events("contact.removed")[0]
    assert removed.before["email"] == "ana@acme.example"
    assert removed.actor_kind == "staff"


def test_bad_contact_rerenders_and_adds_nothing(staff_client, make):
    client = make.client()
    response = post_form(staff_client, f"/staff/clients/{client.id}/contacts/new",
                         {"name": "", "email": "bo@"})
    body = text_of(response)
    assert response.status_code == 422
    assert field_error(body, "name") == "Enter the contact's name."
    assert field_error(body, "email") == "Invalid email address."
    assert count(Contact) == 1

    contact = client.contacts[0]
    response = post_form(staff_client, f"/staff/clients/{client.id}/contacts/{contact.id}/edit",
                         {"name": "Ana R", "email": "not an email"})
    assert response.status_code == 422
    assert field_error(text_of(response), "email") == "Invalid email address."
    with fresh() as s:
        assert (s.get(Contact, contact.id).name, s.get(Contact, contact.id).email) == ("Ana Ribeiro", "ana@acme.example")


def test_cannot_remove_last_contact(staff_client, make):
    client = make.client()
    contact = client.contacts[0]
    before = len(events())
    response = post_form(staff_client, f"/staff/clients/{client.id}/contacts/{contact.id}/delete",
                         follow_redirects=True)
    body = text_of(response)
    assert response.status_code == 200
    assert "A client needs at least one contact." in body
    assert "ana@acme.example" in body
    with fresh() as s:
        assert s.get(Contact, contact.id) is not None
    assert len(events()) == before


@pytest.mark.parametrize("action, method", [
    ("edit", "get"), ("edit", "post"), ("delete", "post"), ("invite", "post"),
    ("portal-link", "post"), ("revoke", "post"),
])
def test_contact_of_another_client_is_not_found(staff_client, make, action, method):
    mine = make.client(name="Acme Ltd")
    other = make.client(name="Other Co", contacts=[
        {"name": "Olga", "email": "olga@other.example", "receives_invoices": True},
        {"name": "Omar", "email": "omar@other.example", "receives_invoices": True}])
    foreign = other.contacts[0]
    url = f"/staff/clients/{mine.id}/contacts/{foreign.id}/{action}"
    before = len(events())
    if method == "get":
        response = staff_client.get(url)
    else:
        response = post_form(staff_client, url, {"name": "Hijacked", "email": "x@evil.example"})
    assert response.status_code == 404
    assert "Not found" in text_of(response)
    with fresh() as s:
        still = s.get(Contact, foreign.id)
        assert (still.name, still.email, still.client_id, still.portal_access) == (
            "Olga", "olga@other.example", other.id, False)
    assert len(events()) == before


def test_unknown_client_is_not_found(staff_client):
    assert staff_client.get("/staff/clients/9999").status_code == 404
    assert staff_client.get("/staff/clients/9999/edit").status_code == 404


# Listing and search ----------------------------------------------------------------------

def test_search_answers_htmx_with_rows_block_only(staff_client, make):
    make.client(name="Acme Ltd")
    make.client(name="Bluebird Coffee", contacts=[{"name": "Jamie Park", "email": "jamie@bluebird.example"}])

    partial = staff_client.get("/staff/clients?q=blue", headers={"HX-Request": "true"})
    body = text_of(partial)
    assert partial.status_code == 200
    assert "<html" not in body and "<nav" not in body.split('id="client-rows"')[0]
    assert body.lstrip().startswith('<div id="client-rows"')
    assert "Bluebird Coffee" in body
    assert "Acme Ltd" not in body
    assert "HX-Request" in partial.headers.get("Vary", "")

    full = staff_client.get("/staff/clients?q=blue")
    body = text_of(full)
    assert "<html" in body and 'id="client-rows"' in body
    assert 'id="client-search"' in body and 'value="blue"' in body
    assert "Bluebird Coffee" in body and "Acme Ltd" not in body
    assert "HX-Request" in full.headers.get("Vary", "")


def test_search_matches_contact_email_and_says_when_nothing_matches(staff_client, make):
    make.client(name="Acme Ltd")
    make.client(name="Bluebird Coffee", contacts=[{"name": "Jamie Park", "email": "jamie@bluebird.example"}])
    body = text_of(staff_client.get("/staff/clients?q=JAMIE@", headers={"HX-Request": "true"}))
    assert "Bluebird Coffee" in body and "Acme Ltd" not in body

    body = text_of(staff_client.get("/staff/clients?q=zzz%25", headers={"HX-Request": "true"}))
    assert "No client matches “zzz%”." in body
    assert "Acme Ltd" not in body


def test_list_pages_past_25_clients(staff_client, make):
    for n in range(1, 28):
        make.client(name=f"Client {n:02d}", contacts=[{"name": f"C{n}", "email": f"c{n}@x.example"}])
    first = text_of(staff_client.get("/staff/clients"))
    assert "Page 1 of 2" in first
    assert "Client 01" in first and "Client 25" in first and "Client 26" not in first
    assert re.search(r'href="/staff/clients\?(q=&amp;)?page=2">Next', first)

    second = text_of(staff_client.get("/staff/clients?page=2"))
    assert "Page 2 of 2" in second
    assert "Client 26" in second and "Client 27" in second and "Client 25" not in second
    assert "← Previous" in second

    searched = text_of(staff_client.get("/staff/clients?q=client&page=2", headers={"HX-Request": "true"}))
    assert "Client 27" in searched and "Client 01" not in searched
    assert "q=client" in searched  # pager keeps the search


# Escaping --------------------------------------------------------------------------------

def test_html_in_names_is_escaped(staff_client):
    evil = "<script>alert(1)</script>"
    response = post_form(staff_client, "/staff/clients/new", {
        **NEW_CLIENT, "name": evil, "contact_name": '<img src=x onerror="alert(2)">'})
    assert response.status_code == 302
    detail = text_of(staff_client.get(response.headers["Location"]))
    listing = text_of(staff_client.get("/staff/clients"))
    for body in (detail, listing):
        assert "<script>alert(1)</script>" not in body
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body
        assert '<img src=x onerror="alert(2)">' not in body
        assert "&lt;img src=x onerror=" in body
