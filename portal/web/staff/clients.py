from __future__ import annotations

from flask import abort, flash, redirect, request, url_for
from flask_login import current_user

from portal.services import auth as auth_service
from portal.services import clients as client_service
from portal.services import credits, payment_methods
from portal.services.errors import NotFound, ServiceError
from portal.services.events import Actor
from portal.web.forms import (
    ClientForm,
    ContactForm,
    NewClientForm,
    PortalLinkForm,
    show_errors,
)
from portal.web.rendering import page_arg, render
from portal.web.staff import bp


def _actor() -> Actor:
    return Actor.of(current_user)


def _client_or_404(client_id: int):
    try:
        return client_service.get_client(client_id)
    except NotFound:
        abort(404)


def _contact_or_404(client_id: int, contact_id: int):
    try:
        return client_service.get_contact(client_id, contact_id)
    except NotFound:
        abort(404)


@bp.get("/clients")
def clients():
    search = request.args.get("q", "")
    page = page_arg()
    result = client_service.list_clients(search=search, page=page)
    return render("staff/clients.html", block="client_rows", clients=result, q=search)


@bp.route("/clients/new", methods=["GET", "POST"])
def client_new():
    form = NewClientForm()
    if form.validate_on_submit():
        try:
            client = client_service.create_client(form.values(), form.contacts(), _actor())
        except client_service.ClientInvalid as exc:
            show_errors(form, exc.errors, aliases=NewClientForm.CONTACT_ERRORS)
        else:
            flash(f"Client {client.name} added.", "success")
            return redirect(url_for("staff.client_detail", client_id=client.id))
    status = 422 if request.method == "POST" else 200
    return render("staff/client_form.html", form=form, client=None), status


@bp.get("/clients/<int:client_id>")
def client_detail(client_id: int):
    client = _client_or_404(client_id)
    return render("staff/client_detail.html", client=client, timeline=client_service.client_timeline(client),
                  link_form=PortalLinkForm(), portal_link=None, billing=client_service.client_billing(client),
                  credit_panel=credits.client_panel(client), methods_panel=payment_methods.client_panel(client))


@bp.route("/clients/<int:client_id>/edit", methods=["GET", "POST"])
def client_edit(client_id: int):
    client = _client_or_404(client_id)
    form = ClientForm(obj=client)
    if form.validate_on_submit():
        try:
            client_service.update_client(client, form.values(), _actor())
        except client_service.ClientInvalid as exc:
            show_errors(form, exc.errors)
        else:
            flash("Client saved.", "success")
            return redirect(url_for("staff.client_detail", client_id=client.id))
    status = 422 if request.method == "POST" else 200
    return render("staff/client_form.html", form=form, client=client), status


@bp.route("/clients/<int:client_id>/contacts/new", methods=["GET", "POST"])
def contact_new(client_id: int):
    client = _client_or_404(client_id)
    form = ContactForm()
    if form.validate_on_submit():
        try:
            client_service.add_contact(client, form.values(), _actor())
        except client_service.ClientInvalid as exc:
            show_errors(form, exc.errors)
        else:
            flash("Contact added.", "success")
            return redirect(url_for("staff.client_detail", client_id=client.id))
    status = 422 if request.method == "POST" else 200
    return render("staff/contact_form.html", form=form, client=client, contact=None), status


@bp.route("/clients/<int:client_id>/contacts/<int:contact_id>/edit", methods=["GET", "POST"])
def contact_edit(client_id: int, contact_id: int):
    client = _client_or_404(client_id)
    contact = _contact_or_404(client_id, contact_id)
    form = ContactForm(obj=contact)
    if form.validate_on_submit():
        try:
            client_service.update_contact(contact, form.values(), _actor())
        except client_service.ClientInvalid as exc:
            show_errors(form, exc.errors)
        else:
            flash("Contact saved.", "success")
            return redirect(url_for("staff.client_detail", client_id=client.id))
    status = 422 if request.method == "POST" else 200
    return render("staff/contact_form.html", form=form, client=client, contact=contact), status


@bp.post("/clients/<int:client_id>/contacts/<int:contact_id>/delete")
def contact_delete(client_id: int, contact_id: int):
    contact = _contact_or_404(client_id, contact_id)
    try:
        client_service.remove_contact(contact, _actor())
        flash("Contact removed.", "success")
    except ServiceError as exc:
        flash(exc.message, "error")
    return redirect(url_for("staff.client_detail", client_id=client_id))


@bp.post("/clients/<int:client_id>/contacts/<int:contact_id>/invite")
def contact_invite(client_id: int, contact_id: int):
    contact = _contact_or_404(client_id, contact_id)
    try:
        auth_service.invite_contact(contact, _actor())
        flash(f"Invitation sent to {contact.email}.", "success")
    except ServiceError as exc:
        flash(exc.message, "error")
    return redirect(url_for("staff.client_detail", client_id=client_id))


@bp.post("/clients/<int:client_id>/contacts/<int:contact_id>/portal-link")
def contact_portal_link(client_id: int, contact_id: int):
    client = _client_or_404(client_id)
    contact = _contact_or_404(client_id, contact_id)
    form = PortalLinkForm()
    link = None
    # A sign-in link is a secret: only the owner sees it; for other staff it is emailed to the contact.
    reveal = bool(getattr(current_user, "is_owner", False))
    send = bool(form.send.data) or not reveal
    if form.validate_on_submit():
        try:
            link = auth_service.create_portal_link(contact, _actor(), send=send)
        except ServiceError as exc:
            flash(exc.message, "error")
            return redirect(url_for("staff.client_detail", client_id=client_id))
    return render("staff/client_detail.html", block="portal_link", client=client,
                  timeline=client_service.client_timeline(client), link_form=PortalLinkForm(formdata=None),
                  portal_link={"contact": contact, "url": link if reveal else None, "made": link is not None,
                               "sent": send},
                  billing=client_service.client_billing(client))


@bp.post("/clients/<int:client_id>/contacts/<int:contact_id>/revoke")
def contact_revoke(client_id: int, contact_id: int):
    contact = _contact_or_404(client_id, contact_id)
    auth_service.revoke_portal_access(contact, _actor())
    flash(f"{contact.name} can no longer sign in to the portal.", "success")
    return redirect(url_for("staff.client_detail", client_id=client_id))
