"""Staff-edited email templates (/staff/email-templates).

Any staff member may read and preview them; only the owner saves or resets.
Rendering happens in the service's Jinja sandbox with the documented variables.
"""
from __future__ import annotations

from flask import abort, flash, redirect, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import StringField, TextAreaField

from portal.services import email_templates as template_service
from portal.services.errors import ServiceError
from portal.services.events import Actor
from portal.web.guards import require_owner
from portal.web.rendering import is_htmx, render
from portal.web.staff import bp


class EmailTemplateForm(FlaskForm):
    # The service checks the template by rendering it in the sandbox; the form carries it and CSRF.
    subject = StringField("Subject")
    body = TextAreaField("Body", render_kw={"rows": 12})


def _key_or_404(key: str) -> str:
    if key not in template_service.DEFAULTS:
        abort(404)
    return key


def _page(key: str, form: EmailTemplateForm, preview=None, preview_errors=None, block=None):
    subject, body, customised = template_service.current(key)
    return render(
        "staff/email_templates/edit.html", block=block, key=key, title=template_service.DEFAULTS[key][0],
        form=form, customised=customised, variables=template_service.VARIABLES, sample=template_service.SAMPLE,
        preview=preview, preview_errors=preview_errors or {},
    )


@bp.get("/email-templates")
def email_templates():
    rows = []
    for key, (title, _subject, _body) in template_service.DEFAULTS.items():
        subject, _body, customised = template_service.current(key)
        rows.append({"key": key, "title": title, "subject": subject, "customised": customised})
    return render("staff/email_templates/index.html", templates=rows, variables=template_service.VARIABLES)


@bp.get("/email-templates/<key>")
def email_template_edit(key: str):
    key = _key_or_404(key)
    subject, body, _customised = template_service.current(key)
    form = EmailTemplateForm(formdata=None, data={"subject": subject, "body": body})
    try:
        preview = template_service.preview(subject, body)
    except ServiceError:
        preview = None
    return _page(key, form, preview=preview)


@bp.post("/email-templates/<key>")
def email_template_save(key: str):
    key = _key_or_404(key)
    require_owner()
    form = EmailTemplateForm()
    if form.validate_on_submit():
        try:
            template_service.save(key, form.subject.data or "", form.body.data or "", Actor.of(current_user))
        except ServiceError as exc:
            for field, message in getattr(exc, "errors", {}).items():
                getattr(form, field).errors = [message]
        else:
            flash("Template saved. New emails use it from now on.", "success")
            return redirect(url_for("staff.email_template_edit", key=key))
    return _page(key, form), 422


@bp.post("/email-templates/<key>/preview")
def email_template_preview(key: str):
    """Render what is typed with sample data, saving nothing. For htmx, only the preview block."""
    key = _key_or_404(key)
    form = EmailTemplateForm()
    preview, errors = None, {}
    if form.validate_on_submit():
        try:
            preview = template_service.preview(form.subject.data or "", form.body.data or "")
        except ServiceError as exc:
            errors = getattr(exc, "errors", {}) or {"body": exc.message}
    # htmx swaps only 2xx answers: an error shown in the preview block is still an answer.
    status = 422 if errors and not is_htmx() else 200
    return _page(key, form, preview=preview, preview_errors=errors, block="preview"), status


@bp.post("/email-templates/<key>/reset")
def email_template_reset(key: str):
    key = _key_or_404(key)
    require_owner()
    template_service.reset(key, Actor.of(current_user))
    flash("Template reset to the default.", "success")
    return redirect(url_for("staff.email_template_edit", key=key))
