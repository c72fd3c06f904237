"""Staff read, preview and (the owner) edit the emails' wording on /staff/email-templates."""
from __future__ import annotations

import html
import re

import pytest
from playwright.sync_api import expect
from sqlalchemy import select
from sqlalchemy.orm import Session

from portal.extensions import db
from portal.models import Delivery, EmailTemplate, Event
from portal.services import email_templates, invoices
from portal.services.events import Actor
from tests.support.web import post_form

KEYS = ("invoice_issued", "invoice_reminder", "payment_receipt", "payment_failed", "payment_method_expiring")
STAFF = Actor("staff", None, "staff@portal.example")


def rows() -> dict[str, tuple[str, str]]:
    with Session(db.engine) as s:
        return {r.key: (r.subject, r.body) for r in s.scalars(select(EmailTemplate))}


def template_events() -> list[Event]:
    with Session(db.engine) as s:
        found = s.scalars(select(Event).where(Event.type.like("email_template.%")).order_by(Event.id)).all()
        s.expunge_all()
        return found


def text(response) -> str:
    return response.get_data(as_text=True)


def field_error(page: str, field_id: str) -> str:
    match = re.search(rf'id="{field_id}-error"[^>]*>([^<]*)<', page)
    return html.unescape(match.group(1)).strip() if match else ""


def preview_block(page: str) -> str:
    match = re.search(r'<section id="template-preview".*?</section>', page, re.S)
    assert match, "no preview block"
    return match.group(0)


@pytest.fixture
def business(make):
    return make.business(name="Tidewater Studio", currency="EUR", locale="en_IE",
                         invoice_number_format="INV-{seq:04d}")


def test_list_shows_the_five_templates_and_their_state(owner_client, business):
    page = text(owner_client.get("/staff/email-templates"))
    for key in KEYS:
        row = re.search(rf'<tr id="template-{key}".*?</tr>', page, re.S).group(0)
        assert f'href="/staff/email-templates/{key}"' in row
        assert ">Default</span>" in row
    assert "Payment method expiring" in page
    assert "{{ customer_name }}" in page  # the variables are named

    post_form(owner_client, "/staff/email-templates/payment_failed",
              {"subject": "Payment trouble, {{ customer_name }}", "body": "Hi {{ customer_name }}"})
    page = text(owner_client.get("/staff/email-templates"))
    row = re.search(r'<tr id="template-payment_failed".*?</tr>', page, re.S).group(0)
    assert ">Customised</span>" in row and "Payment trouble, {{ customer_name }}" in row


def test_edit_page_lists_variables_and_previews_the_current_text(staff_client, business):
    page = text(staff_client.get("/staff/email-templates/invoice_issued"))
    assert 'value="{{company_name}} sent you an invoice"' in page
    assert "Hello {{customer_name}}," in page
    for name in email_templates.VARIABLES:
        assert "{{ " + name + " }}" in page
    preview = preview_block(page)
    assert "Tidewater Studio sent you an invoice" in preview and "Hello Ana Ribeiro," in preview
    # Staff who aren't the owner get no Save or Reset button.
    assert "Only the owner can change email templates." in page
    assert "Save template" not in page


def test_htmx_preview_returns_only_the_preview_and_saves_nothing(staff_client, business):
    response = post_form(staff_client, "/staff/email-templates/invoice_reminder/preview", {
        "subject": "Nudge about {{ invoice_number }}",
        "body": "Dear {{ customer_name|upper }},\n{% if amount_due %}You owe {{ amount_due }}.{% endif %}",
    }, htmx=True)
    block = text(response)
    assert response.status_code == 200
    assert "<html" not in block and block.lstrip().startswith('<section id="template-preview"')
    assert "Nudge about INV-2026-00042" in block
    assert "Dear ANA RIBEIRO,\nYou owe €1,230.00." in block
    assert rows() == {}
    assert template_events() == []


@pytest.mark.parametrize("body, reason", [
    ("Hello {{ unknown_var }}", "'unknown_var' is not one of the variables"),
    ("{% for %}", "Expected an expression"),
    ("{% for x in customer_name %}{{ x }}{% endfor %}", "{% for %} is not supported"),
    ("{{ customer_name.__class__ }}", "reading attributes or items of a variable is not allowed"),
    ("{{ ''.__class__.__mro__ }}", "reading attributes or items of a variable is not allowed"),
    ("{{ self }}", "'self' is not one of the variables"),
    ("{{ self._TemplateReference__context }}", "reading attributes or items of a variable is not allowed"),
    ("{{ range(10) }}", "calling functions or methods is not allowed"),
    ("{{ lipsum }}", "'lipsum' is not one of the variables"),
    ("{{ customer_name * 100000000 }}", "mul expressions are not supported"),
    ("{{ customer_name|center(1000000000) }}", "the filter 'center' is not available"),
    ("{{ customer_name.format }}", "reading attributes or items of a variable is not allowed"),
    ("{{ 9 ** 9 ** 9 }}", "pow expressions are not supported"),
    ("Unclosed {{ customer_name", "unexpected end of template"),
])
def test_a_template_that_cannot_render_is_refused_and_not_saved(owner_client, business, body, reason):
    # Preview: the error inline, in the preview block.
    response = post_form(owner_client, "/staff/email-templates/invoice_issued/preview",
                         {"subject": "Invoice {{ invoice_number }}", "body": body}, htmx=True)
    block = text(response)
    assert response.status_code == 200
    assert "This template can't be used." in block
    assert reason in html.unescape(block)
    for leak in ("TemplateReference", "<class", "&lt;class", "object at 0x", "<function", "&lt;function",
                 "LoopContext"):
        assert leak not in block

    # Without htmx the whole page comes back with 422.
    response = post_form(owner_client, "/staff/email-templates/invoice_issued/preview",
                         {"subject": "Invoice {{ invoice_number }}", "body": body})
    assert response.status_code == 422
    assert reason in html.unescape(preview_block(text(response)))

    # Save: refused with the reason, what was typed kept, nothing stored.
    response = post_form(owner_client, "/staff/email-templates/invoice_issued",
                         {"subject": "Invoice {{ invoice_number }}", "body": body})
    page = text(response)
    assert response.status_code == 422
    assert "The template was not saved." in page
    assert reason in field_error(page, "body")
    textarea = re.search(r'<textarea[^>]*name="body"[^>]*>(.*?)</textarea>', page, re.S).group(1)
    assert html.unescape(textarea).strip() == body
    assert 'value="Invoice {{ invoice_number }}"' in page
    assert rows() == {}
    assert template_events() == []


def test_the_sandbox_never_renders_a_stored_template_that_escapes_it(app, business):
    """Even a row written behind the service's back (no check) cannot print internals: rendering falls
    back to the default wording."""
    db.session.add(EmailTemplate(key="invoice_issued", subject="{{ self }}", body="{{ ''.__class__.__mro__ }}"))
    db.session.commit()
    subject, body = email_templates.render("invoice_issued", email_templates.SAMPLE)
    assert subject == "Tidewater Studio sent you an invoice"
    assert "TemplateReference" not in body and "class" not in body
    assert body.startswith("Hello Ana Ribeiro,")


def test_empty_or_multiline_subject_is_refused(owner_client, business):
    response = post_form(owner_client, "/staff/email-templates/payment_receipt", {"subject": "  ", "body": "Hi"})
    assert response.status_code == 422
    assert field_error(text(response), "subject") == "This can't be empty."
    response = post_form(owner_client, "/staff/email-templates/payment_receipt",
                         {"subject": "Hi", "body": "   "})
    assert field_error(text(response), "body") == "This can't be empty."
    assert rows() == {}


def test_owner_saves_and_new_emails_use_it(owner_client, business, make):
    response = post_form(owner_client, "/staff/email-templates/invoice_issued", {
        "subject": "New invoice {{ invoice_number }} from {{ company_name }}",
        "body": "Hi {{ customer_name }}, <b>{{ amount_due }}</b> is due {{ due_date }}."})
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/staff/email-templates/invoice_issued")
    assert rows() == {"invoice_issued": ("New invoice {{ invoice_number }} from {{ company_name }}",
                                         "Hi {{ customer_name }}, <b>{{ amount_due }}</b> is due {{ due_date }}.")}
    [event] = template_events()
    assert event.type == "email_template.saved" and event.data == {"key": "invoice_issued"}
    assert event.actor_label == "owner@portal.example"
    page = text(owner_client.get("/staff/email-templates/invoice_issued"))
    assert "Template saved." in page and ">Customised</span>" in page

    client = make.client()
    draft = invoices.create_draft(client, STAFF)
    invoices.save_draft(draft, invoices.DraftInput(currency="EUR", lines=[
        {"description": "Work", "quantity": "1", "unit_price": "10"}]), STAFF)
    invoices.send(draft, STAFF)
    with Session(db.engine) as s:
        delivery = s.scalars(select(Delivery).where(Delivery.subject_type == "invoice")).one()
        assert delivery.subject == "New invoice INV-0001 from Tidewater Studio"
        assert "Hi Ana Ribeiro, <b>€10.00</b> is due" in delivery.payload["text"]
        # In the HTML email the staff's markup is text, not markup.
        assert "&lt;b&gt;€10.00&lt;/b&gt;" in delivery.payload["html"]


def test_owner_resets_to_default(owner_client, business):
    post_form(owner_client, "/staff/email-templates/invoice_reminder", {"subject": "Pay up", "body": "Now."})
    page = text(owner_client.get("/staff/email-templates/invoice_reminder"))
    assert "Reset to default" in page and 'value="Pay up"' in page

    response = post_form(owner_client, "/staff/email-templates/invoice_reminder/reset")
    assert response.status_code == 302
    assert rows() == {}
    page = text(owner_client.get("/staff/email-templates/invoice_reminder"))
    assert "Template reset to the default." in page
    assert 'value="Reminder: invoice {{invoice_number}} from {{company_name}}"' in page
    assert ">Default</span>" in page and "Reset to default" not in page
    assert [e.type for e in template_events()] == ["email_template.saved", "email_template.reset"]


def test_staff_may_preview_but_not_save_or_reset(staff_client, business, make):
    response = post_form(staff_client, "/staff/email-templates/invoice_issued/preview",
                         {"subject": "Try {{ invoice_number }}", "body": "Body"}, htmx=True)
    assert response.status_code == 200 and "Try INV-2026-00042" in text(response)

    response = post_form(staff_client, "/staff/email-templates/invoice_issued",
                         {"subject": "Mine now", "body": "Body"})
    assert response.status_code == 403
    assert rows() == {}

    db.session.add(EmailTemplate(key="invoice_issued", subject="Owner's", body="Owner's body"))
    db.session.commit()
    assert post_form(staff_client, "/staff/email-templates/invoice_issued/reset").status_code == 403
    assert rows() == {"invoice_issued": ("Owner's", "Owner's body")}
    assert template_events() == []


def test_markup_in_a_template_is_escaped_on_the_page(owner_client, business):
    payload = '<script>alert("x")</script>'
    response = post_form(owner_client, "/staff/email-templates/payment_failed/preview",
                         {"subject": "Hi " + payload, "body": "Body " + payload})
    page = text(response)
    assert "<script>alert" not in page
    assert "&lt;script&gt;alert" in preview_block(page)
    post_form(owner_client, "/staff/email-templates/payment_failed", {"subject": "S " + payload, "body": payload})
    for url in ("/staff/email-templates", "/staff/email-templates/payment_failed"):
        assert "<script>alert" not in text(owner_client.get(url))


def test_unknown_template_is_not_found(owner_client, business):
    assert owner_client.get("/staff/email-templates/nope").status_code == 404
    assert post_form(owner_client, "/staff/email-templates/nope", {"subject": "a", "body": "b"}).status_code == 404
    assert post_form(owner_client, "/staff/email-templates/nope/preview",
                     {"subject": "a", "body": "b"}).status_code == 404
    assert post_form(owner_client, "/staff/email-templates/nope/reset").status_code == 404


def test_email_templates_need_a_staff_login(client, make, auth, business):
    response = client.get("/staff/email-templates")
    assert response.status_code == 302 and "/staff/login" in response.headers["Location"]
    make.contact_with_login()
    auth.login_contact()
    assert client.get("/staff/email-templates/invoice_issued").status_code == 403


@pytest.mark.browser
def test_browser_preview_updates_in_place_and_owner_saves(page, make, business):
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    owner = make.owner()
    page.goto("/staff/login")
    page.get_by_label("Email").fill(owner.email)
    page.get_by_label("Password").fill(owner.plain_password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/staff/")

    page.goto("/staff/email-templates/invoice_issued")
    page.get_by_label("Body").fill("Hi {{ customer_name }}, see {{ invoice_number }}.")
    page.get_by_role("button", name="Preview").click()
    expect(page.locator("#template-preview")).to_contain_text("Hi Ana Ribeiro, see INV-2026-00042.")
    assert page.url.endswith("/staff/email-templates/invoice_issued")  # swapped in place
    assert rows() == {}

    page.get_by_label("Body").fill("Hi {{ self }}")
    page.get_by_role("button", name="Preview").click()
    expect(page.locator("#template-preview")).to_contain_text("'self' is not one of the variables")

    page.get_by_label("Body").fill("Hello {{ customer_name }}!")
    page.get_by_role("button", name="Save template").click()
    expect(page.locator(".flashes")).to_contain_text("Template saved.")
    assert rows()["invoice_issued"][1] == "Hello {{ customer_name }}!"
    assert errors == []
