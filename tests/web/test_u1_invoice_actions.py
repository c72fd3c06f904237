"""U1 (3, 5, 6, 8, 12): the staff invoice actions, over HTTP.

- A manual payment above the amount due asks first, naming the excess and the client whose credit
  balance takes it; nothing is recorded until staff confirm; then the invoice page shows the credit.
- "Issue a replacement": finalizing the replacement voids the original (through void's path) and
  the two link to each other on the staff pages, the guest page and the client portal.
- "Finalize & lock" and "Send" look different, and each asks once, naming who is emailed.
- "Mark as paid": the full amount due, today, by the method chosen; refused when nothing is due.
- The seeds' words (Void, Mark as paid) and one confirm dialog (hx-confirm) on every such action.
"""
from __future__ import annotations

import html
import re
from datetime import date, datetime, timezone
from decimal import Decimal

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from portal import clock
from portal.extensions import db
from portal.models import Charge, Event, Invoice, Payment
from portal.services import credits, invoices
from portal.services.events import Actor
from tests.support.web import post_form

STAFF = Actor("staff", None, "staff@portal.example")
NOW = datetime(2026, 3, 10, 12, tzinfo=timezone.utc)


@pytest.fixture(autouse=True)
def now():
    with clock.frozen(NOW):
        yield NOW


@pytest.fixture
def business(make):
    return make.business(name="Tidewater Studio", currency="EUR", timezone="UTC", locale="en_US",
                         invoice_number_format="INV-{seq:04d}", payment_terms_days=14)


@pytest.fixture
def ana(business, make):
    """Ana Ribeiro, billing contact of Acme Ltd, with a portal login."""
    return make.contact_with_login(email="ana@acme.example", client_name="Acme Ltd")


@pytest.fixture
def acme(ana):
    return ana.client


def text_of(response) -> str:
    return response.get_data(as_text=True)


def visible(response) -> str:
    """The page's text as read: tags dropped, spaces collapsed, no space before punctuation."""
    text = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", text_of(response))).split())
    return re.sub(r" ([.,:;?)])", r"\1", text)


def flashes(response) -> str:
    return " ".join(html.unescape(m) for m in re.findall(r'<p class="flash flash-\w+">(.*?)</p>', text_of(response)))


def confirms(response) -> list[str]:
    """Every confirm question on the page (the dialog shows these), unescaped."""
    return [html.unescape(q) for q in re.findall(r'hx-confirm="([^"]*)"', text_of(response))]


def build(client, lines, finalize=True) -> Invoice:
    draft = invoices.create_draft(client, STAFF)
    invoices.save_draft(draft, invoices.DraftInput(currency="EUR", lines=[
        {"description": d, "quantity": q, "unit_price": p} for d, q, p in lines]), STAFF)
    if finalize:
        invoices.finalize(draft, STAFF)
    return draft


def fresh(invoice_id: int) -> Invoice:
    with Session(db.engine) as s:
        found = s.get(Invoice, invoice_id)
        s.expunge(found)
        return found


def payments_of(invoice_id: int) -> list[Payment]:
    with Session(db.engine) as s:
        rows = list(s.scalars(select(Payment).where(Payment.invoice_id == invoice_id).order_by(Payment.id)))
        for row in rows:
            s.expunge(row)
        return rows


def post(staff_client, url, data=None, **kwargs):
    return post_form(staff_client, url, data or {}, follow_redirects=True, **kwargs)


# 3. Overpayment ------------------------------------------------------------------------------------

def test_overpayment_asks_first_records_nothing_then_shows_the_credit(acme, staff_client):
    invoice = build(acme, [("Domain renewal", "1", "10.00")])
    url = f"/staff/invoices/{invoice.id}/payments"
    page = staff_client.get(f"/staff/invoices/{invoice.id}")
    assert "€10.00 is due. Partial payments are fine; above that, you are asked before the rest goes to " \
           "Acme Ltd's credit balance." in visible(page)

    asked = post_form(staff_client, url, {"amount": "100.00", "method": "check", "received_on": "2026-03-09",
                                          "reference": "CHQ 7"})
    assert asked.status_code == 200
    shown = visible(asked)
    assert "€90.00 more than is due will go to Acme Ltd's credit balance." in shown
    assert "€100.00 received; €10.00 is due on this invoice. Nothing is recorded yet." in shown
    body = text_of(asked)
    assert '<input type="hidden" name="confirm_excess" value="1">' in body
    for name, value in (("amount", "100.00"), ("method", "check"), ("received_on", "2026-03-09"),
                        ("reference", "CHQ 7")):
        assert f'<input type="hidden" name="{name}" value="{value}">' in body
    assert "Record €100.00 and credit €90.00" in shown
    assert payments_of(invoice.id) == []
    assert fresh(invoice.id).status == "open" and credits.balance(acme.id, "EUR") == 0

    done = post(staff_client, url, {"amount": "100.00", "method": "check", "received_on": "2026-03-09",
                                    "reference": "CHQ 7", "confirm_excess": "1"})
    assert ("Payment recorded; the invoice is paid. €90.00 more than was due went to Acme Ltd's credit "
            "balance.") in flashes(done)
    [payment] = payments_of(invoice.id)
    assert (payment.amount, payment.credited_amount, payment.method, payment.received_on) == (
        10000, 9000, "check", date(2026, 3, 9))
    assert fresh(invoice.id).status == "paid" and credits.balance(acme.id, "EUR") == 9000
    page = visible(staff_client.get(f"/staff/invoices/{invoice.id}"))
    assert "€100.00 €90.00 to credit" in page
    assert "€90.00 more than was due went to Acme Ltd's credit balance." in page


def test_a_payment_up_to_the_amount_due_is_recorded_at_once(acme, staff_client):
    invoice = build(acme, [("Work", "1", "10.00")])
    url = f"/staff/invoices/{invoice.id}/payments"
    partial = post(staff_client, url, {"amount": "4.00", "method": "cash"})
    assert flashes(partial) == "Payment recorded."
    rest = post(staff_client, url, {"amount": "6.00", "method": "cash"})
    assert flashes(rest) == "Payment recorded; the invoice is paid."
    assert [p.credited_amount for p in payments_of(invoice.id)] == [0, 0]


def test_the_excess_is_asked_again_when_the_amount_due_fell_meanwhile(acme, staff_client):
    """The question is worked out under the invoice's lock each time: after €4 arrives another way,
    the same €15 asks about €9, not the €5 it asked about before."""
    invoice = build(acme, [("Work", "1", "10.00")])
    url = f"/staff/invoices/{invoice.id}/payments"
    asked = post_form(staff_client, url, {"amount": "15.00", "method": "cash"})
    assert "€5.00 more than is due will go to Acme Ltd's credit balance." in visible(asked)
    invoices.record_manual_payment(invoice, "4.00", "wire", "", "", STAFF)
    again = post_form(staff_client, url, {"amount": "15.00", "method": "cash"})
    assert "€9.00 more than is due will go to Acme Ltd's credit balance." in visible(again)
    assert len(payments_of(invoice.id)) == 1


# 5. Replacement ------------------------------------------------------------------------------------

def _portal(app, ana):
    browser = app.test_client()
    assert post_form(browser, "/portal/login", {"email": ana.email, "password": ana.plain_password}).status_code \
        == 302
    return browser


def test_finalizing_a_replacement_voids_the_original_and_both_link(app, ana, acme, staff_client, client):
    original = build(acme, [("Design", "1", "100.00")])
    original_id, original_number = original.id, original.number
    guest_raw = invoices.issue_guest_token(original)
    db.session.commit()

    made = post_form(staff_client, f"/staff/invoices/{original_id}/replace", {})
    assert made.status_code == 303
    draft_id = int(made.headers["Location"].rsplit("/", 1)[1])
    editor = staff_client.get(made.headers["Location"])
    assert (f"Replacement draft for {original_number} created. {original_number} stays as it is until you "
            "finalize this draft; then it is voided.") in flashes(editor)
    assert f"replaces invoice {original_number} (finalizing this draft voids it)" in visible(editor)
    [finalize_q] = [q for q in confirms(editor) if q.startswith("Finalize & lock")]
    assert f"Invoice {original_number}, which it replaces, is voided." in finalize_q
    assert fresh(original_id).status == "open"  # until the replacement is finalized

    post(staff_client, f"/staff/invoices/{draft_id}/finalize")
    before, after = fresh(original_id), fresh(draft_id)
    assert after.status == "open" and after.number == "INV-0002"
    assert before.status == "void" and before.replaced_by_invoice_id == draft_id
    assert before.void_reason == "Replaced by invoice INV-0002."
    with Session(db.engine) as s:
        voided = s.scalar(select(Event).where(Event.type == "invoice.voided", Event.subject_id == original_id))
        assert voided.data["replaced_by"] == draft_id and voided.after == {"status": "void"}

    # Staff: each page links to the other.
    old_page = staff_client.get(f"/staff/invoices/{original_id}")
    assert "Replaced by invoice INV-0002: this one was voided and nothing is due on it." in visible(old_page)
    assert f'href="/staff/invoices/{draft_id}">invoice INV-0002</a>' in text_of(old_page)
    new_page = staff_client.get(f"/staff/invoices/{draft_id}")
    assert f"Replaces invoice {original_number} (voided)." in visible(new_page)
    assert f'href="/staff/invoices/{original_id}">invoice {original_number}</a>' in text_of(new_page)

    # Guest: the old link's page names the replacement but opens nothing else (a guest link opens its
    # own invoice only; the replacement comes by its own email).
    guest = client.get(f"/pay/{guest_raw}")
    assert "Replaced by invoice INV-0002" in visible(guest) and "Its own link comes by email" in visible(guest)
    assert "/related/" not in guest.get_data(as_text=True)
    assert post_form(client, f"/pay/{guest_raw}/related/{draft_id}").status_code in (404, 405)

    # Portal: the same links, to the portal's pages.
    portal = _portal(app, ana)
    old_portal = portal.get(f"/portal/invoices/{original_id}")
    assert f'href="/portal/invoices/{draft_id}">invoice INV-0002</a>' in text_of(old_portal)
    new_portal = portal.get(f"/portal/invoices/{draft_id}")
    assert f'href="/portal/invoices/{original_id}">invoice {original_number}</a>' in text_of(new_portal)

    # The PDF names the other invoice without a link.
    from portal.services import invoice_documents
    assert "Replaced by invoice INV-0002" in " ".join(re.sub(r"<[^>]+>", " ", invoice_documents.render_html(
        db.session.get(Invoice, original_id))).split())


def test_a_replacement_is_refused_when_the_original_was_paid_meanwhile(acme, staff_client):
    original = build(acme, [("Design", "1", "100.00")])
    replacement = invoices.replace(original, STAFF)
    invoices.record_manual_payment(original, "100.00", "wire", "", "", STAFF)
    page = post(staff_client, f"/staff/invoices/{replacement.id}/finalize")
    assert (f"Invoice {original.number}, which this draft replaces, has been paid since the replacement was "
            "drafted") in flashes(page)
    assert fresh(replacement.id).status == "draft" and fresh(original.id).status == "paid"


def test_replacing_a_void_invoice_leaves_it_void_and_links_both(acme, staff_client):
    original = build(acme, [("Design", "1", "100.00")])
    invoices.void(original, STAFF, "Wrong client")
    replacement = invoices.replace(original, STAFF)
    post(staff_client, f"/staff/invoices/{replacement.id}/finalize")
    before = fresh(original.id)
    assert before.void_reason == "Wrong client" and before.replaced_by_invoice_id == replacement.id
    assert "Replaced by invoice INV-0002" in visible(staff_client.get(f"/staff/invoices/{original.id}"))


# 6. Finalize vs send -------------------------------------------------------------------------------

@pytest.mark.parametrize("notify", [True, False])
def test_finalize_and_send_look_different_and_each_confirm_names_who_is_emailed(acme, make, staff_client, notify):
    make.business(notify_invoice_ready=notify)
    draft = build(acme, [("Work", "1", "10.00")], finalize=False)
    editor = staff_client.get(f"/staff/invoices/{draft.id}")
    body = text_of(editor)
    finalize_button = re.search(r'<button type="submit" name="then" value="finalize".*?</button>', body, re.S).group(0)
    send_button = re.search(r'<button type="submit" name="then" value="send".*?</button>', body, re.S).group(0)
    finalize_label = html.unescape(re.search(r">([^<>]*)</button>$", finalize_button).group(1))
    send_label = html.unescape(re.search(r">([^<>]*)</button>$", send_button).group(1))
    assert send_label == "Save & send by email"
    assert finalize_label == ("Save, finalize & lock · notifies client" if notify else
                              "Save, finalize & lock · no email")
    finalize_q = html.unescape(re.search(r'hx-confirm="([^"]*)"', finalize_button).group(1))
    send_q = html.unescape(re.search(r'hx-confirm="([^"]*)"', send_button).group(1))
    assert finalize_q.startswith("Finalize & lock this invoice? It gets its number and can no longer be edited.")
    if notify:
        assert "The “invoice ready” notification emails ana@acme.example." in finalize_q
    else:
        assert "Nobody is emailed; it appears in Acme Ltd's portal." in finalize_q
    assert send_q == "Finalize, lock and email this invoice to ana@acme.example, with the PDF and a pay link?"
    assert 'data-confirm-label="Finalize &amp; lock"' in finalize_button and 'data-confirm-label="Send"' in send_button
    # Both post through htmx so the dialog asks; without JavaScript they are plain submits.
    assert f'hx-post="/staff/invoices/{draft.id}"' in finalize_button and 'hx-target="body"' in send_button

    page = post(staff_client, f"/staff/invoices/{draft.id}/finalize")
    shown = visible(page)
    if notify:
        assert "finalized Mar 10, 2026, emailed Mar 10, 2026" in shown
        assert ">Resend<" in text_of(page)
    else:
        assert "not emailed: the client sees it in the portal" in shown
        [send_q] = [q for q in confirms(page) if q.startswith("Email invoice")]
        assert send_q == "Email invoice INV-0001 to ana@acme.example, with the PDF and a pay link?"
        assert ">Send<" in text_of(page)


def test_an_htmx_save_and_send_with_a_mistake_answers_the_editor_with_its_errors(acme, staff_client):
    """The editor's finalize/send buttons post through htmx (hx-target=body): a 422 comes back as the
    full editor, which the page script swaps in, as a plain form post would show it."""
    draft = build(acme, [("Work", "1", "10.00")], finalize=False)
    response = post_form(staff_client, f"/staff/invoices/{draft.id}", {
        "then": "send", "currency": "EUR", "lines-0-description": "Work", "lines-0-quantity": "1",
        "lines-0-unit_price": "ten"}, htmx=True, headers={"HX-Target": "body"})
    assert response.status_code == 422
    assert "<html" in text_of(response) and 'id="invoice-editor"' in text_of(response)
    assert "Use an amount like 120.00." in text_of(response)
    assert fresh(draft.id).status == "draft"


# 8. Mark as paid, and the seed's words ---------------------------------------------------------------

def test_mark_as_paid_records_the_full_amount_due_today_by_the_method_chosen(acme, staff_client):
    invoice = build(acme, [("Work", "1", "123.00")])
    invoices.record_manual_payment(invoice, "23.00", "wire", "2026-03-01", "", STAFF)
    page = staff_client.get(f"/staff/invoices/{invoice.id}")
    assert "Mark as paid" in visible(page)
    assert "Records the full €100.00 due as received today." in visible(page)
    [question] = [q for q in confirms(page) if q.startswith("Mark invoice")]
    assert question == "Mark invoice INV-0001 as paid? This records €100.00 received today from Acme Ltd."

    done = post(staff_client, f"/staff/invoices/{invoice.id}/mark-paid", {"method": "cash"},
                headers={"HX-Request": "true", "HX-Boosted": "true"})
    assert done.status_code == 200
    assert flashes(done) == "Invoice INV-0001 marked as paid: €100.00 (Cash, received today)."
    latest = payments_of(invoice.id)[-1]
    assert (latest.amount, latest.method, latest.received_on, latest.status, latest.credited_amount) == (
        10000, "cash", date(2026, 3, 10), "succeeded", 0)
    after = fresh(invoice.id)
    assert (after.status, after.amount_due, after.amount_paid) == ("paid", 0, 12300)
    assert "Mark as paid" not in visible(done)

    again = post(staff_client, f"/staff/invoices/{invoice.id}/mark-paid", {"method": "cash"})
    assert "An invoice that is paid can't be marked as paid: nothing is due on it." in flashes(again)
    assert len(payments_of(invoice.id)) == 2


def test_mark_as_paid_is_refused_on_a_void_invoice_and_for_an_unknown_method(acme, staff_client):
    invoice = build(acme, [("Work", "1", "50.00")])
    bad = post_form(staff_client, f"/staff/invoices/{invoice.id}/mark-paid", {"method": "barter"})
    assert bad.status_code == 422 and "Choose how it was paid." in visible(bad)
    invoices.void(invoice, STAFF)
    refused = post(staff_client, f"/staff/invoices/{invoice.id}/mark-paid", {"method": "wire"})
    assert "An invoice that is cancelled can't be marked as paid" in flashes(refused)
    assert payments_of(invoice.id) == []


def test_the_seed_words_void_and_mark_as_paid(acme, staff_client):
    invoice = build(acme, [("Work", "1", "50.00")])
    page = staff_client.get(f"/staff/invoices/{invoice.id}")
    shown = visible(page)
    assert "Void (cancel) this invoice" in shown and "Void invoice" in shown and "Mark as paid" in shown
    assert "Cancel this invoice" not in shown and ">Cancel invoice<" not in text_of(page)
    [void_q] = [q for q in confirms(page) if q.startswith("Void")]
    assert void_q == "Void invoice INV-0001? It can't be paid or edited afterwards; Acme Ltd sees it as cancelled."
    voided = post(staff_client, f"/staff/invoices/{invoice.id}/void", {"reason": ""})
    assert flashes(voided) == "Invoice INV-0001 voided (cancelled). Nothing is due on it."


# 12. One confirm dialog ------------------------------------------------------------------------------

def test_every_locking_or_money_action_asks_through_the_confirm_dialog(acme, staff_client):
    charge = Charge(client_id=acme.id, description="Call", quantity=Decimal(1), unit_price=5000, currency="EUR",
                    status="open")
    db.session.add(charge)
    db.session.commit()
    client_page = staff_client.get(f"/staff/clients/{acme.id}")
    drafting = [q for q in confirms(client_page) if q.startswith("Draft an invoice")]
    assert drafting == [
        "Draft an invoice for Acme Ltd with the selected charges? The draft is not visible to the client until "
        "you finalize it.",
        "Draft an invoice for Acme Ltd with all its open charges (1)? The draft is not visible to the client "
        "until you finalize it."]

    draft = build(acme, [("Work", "1", "50.00")], finalize=False)
    editor = staff_client.get(f"/staff/invoices/{draft.id}")
    questions = confirms(editor)
    assert "Delete this draft? Charges on it go back to open." in questions
    assert any(q.startswith("Finalize & lock") for q in questions)
    assert any(q.startswith("Finalize, lock and email") for q in questions)

    invoice = build(acme, [("Work", "1", "50.00")])
    invoices.record_manual_payment(invoice, "20.00", "wire", "", "", STAFF)
    page = staff_client.get(f"/staff/invoices/{invoice.id}")
    questions = confirms(page)
    assert any(q.startswith("Void invoice") for q in questions)
    assert any(q.startswith("Mark invoice") for q in questions)
    assert ("Refund this €20.00 bank transfer payment (all of it or the amount typed)? A numbered credit note "
            "records it and Acme Ltd is emailed.") in questions

    # One script asks them all, in a <dialog>; it is served from the portal itself (CSP 'self').
    assert '<script src="/static/js/confirm.js" defer></script>' in text_of(page)
    script = staff_client.get("/static/js/confirm.js")
    assert script.status_code == 200
    source = script.get_data(as_text=True)
    assert "htmx:confirm" in source and "showModal" in source and 'createElement("dialog")' in source
    assert "issueRequest(true)" in source


def test_a_refund_with_a_mistake_comes_back_as_the_page_with_its_error(acme, staff_client):
    """The refund form is boosted (for the dialog): a 422 answer is the full page, swapped in whole."""
    invoice = build(acme, [("Work", "1", "50.00")])
    payment = invoices.record_manual_payment(invoice, "20.00", "wire", "", "", STAFF)
    response = post_form(staff_client, f"/staff/invoices/{invoice.id}/payments/{payment.id}/refund",
                         {"amount": "999.00", "reason": ""}, htmx=True, headers={"HX-Boosted": "true"})
    assert response.status_code == 422 and "<html" in text_of(response)
    with Session(db.engine) as s:
        assert s.scalar(select(func.count()).select_from(Payment).where(Payment.refunded_amount > 0)) == 0
