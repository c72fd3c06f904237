"""Emails staff can edit: a subject and a plain-text body per template, rendered
in a Jinja sandbox that sees only the documented variables.

A template that fails to render is refused (and not saved) with the reason.
"""
from __future__ import annotations

import functools

from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment
from sqlalchemy import select

from portal.extensions import db
from portal.models import EmailTemplate
from portal.services.errors import ServiceError
from portal.services.events import Actor, commit, record_event

VARIABLES = ("customer_name", "invoice_number", "amount_due", "due_date", "invoice_url", "pay_now_url",
             "company_name", "line_summary",
             # The upcoming-invoice notice (R1): the day the invoice will be made, its service period, and
             # the saved method autopay will charge ("VISA •••• 4242"; empty: a payment link will come).
             # Empty in the other emails.
             "invoice_date", "service_period", "payment_method")

DEFAULTS: dict[str, tuple[str, str, str]] = {
    # key: (title, subject, body)
    "invoice_issued": (
        "Invoice sent",
        "{{company_name}} sent you an invoice",
        ("Hello {{customer_name}},\n\n{{company_name}} sent you invoice {{invoice_number}} for {{amount_due}}, "
         "due {{due_date}}.\n\n{{line_summary}}\n\nYou can view it, download the PDF and pay online.\n\nThank you!"),
    ),
    "invoice_reminder": (
        "Payment reminder",
        "Reminder: invoice {{invoice_number}} from {{company_name}}",
        ("Hello {{customer_name}},\n\nThis is a friendly reminder that invoice {{invoice_number}} for "
         "{{amount_due}} is due {{due_date}}.\n\nIf you've already paid, thank you and please ignore this."),
    ),
    "payment_receipt": (
        "Payment receipt",
        "Receipt for invoice {{invoice_number}} from {{company_name}}",
        ("Hello {{customer_name}},\n\nThank you! We received your payment for invoice {{invoice_number}}.\n\n"
         "Amount still due: {{amount_due}}."),
    ),
    "payment_failed": (
        "Payment failed",
        "Your payment for invoice {{invoice_number}} didn't go through",
        ("Hello {{customer_name}},\n\nWe couldn't collect the payment for invoice {{invoice_number}} "
         "({{amount_due}}). Please pay online or update your payment method."),
    ),
    "payment_method_expiring": (
        "Payment method expiring",
        "Your payment method for {{company_name}} is expiring",
        ("Hello {{customer_name}},\n\nThe card you keep on file with {{company_name}} expires soon. "
         "Please add a new payment method so your next payment goes through."),
    ),
    "upcoming_invoice": (
        "Upcoming invoice",
        "Your next invoice from {{company_name}}: {{amount_due}} on {{invoice_date}}",
        ("Hello {{customer_name}},\n\nYour next invoice from {{company_name}}, for {{amount_due}}, will be issued on "
         "{{invoice_date}}{% if service_period %} for the service period {{service_period}}{% endif %}.\n\n"
         "{% if payment_method %}We will charge {{payment_method}}: there is nothing you need to do.{% else %}"
         "You will receive a payment link by email when it is issued.{% endif %}\n\nThank you!"),
    ),
}

SAMPLE = {
    "customer_name": "Ana Ribeiro",
    "invoice_number": "INV-2026-00042",
    "amount_due": "€1,230.00",
    "due_date": "December 31, 2026",
    "invoice_url": "https://billing.example.com/pay/sample",
    "pay_now_url": "https://billing.example.com/pay/sample",
    "company_name": "Tidewater Studio",
    "line_summary": "- Website design: €1,000.00\n- Hosting, 12 months: €230.00",
    "invoice_date": "January 3, 2027",
    "service_period": "1 Jan – 31 Jan 2027",
    "payment_method": "VISA •••• 4242",
}

_env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)


@functools.lru_cache(maxsize=256)
def _compiled(source: str):
    """A template compiled once per distinct source (compiling in the sandbox costs ~0.7 ms; a billing
    run renders thousands of emails from the same two sources)."""
    return _env.from_string(source)


def _render(source: str, variables: dict) -> str:
    return _compiled(source).render(**{k: variables.get(k, "") for k in VARIABLES})


def current(key: str) -> tuple[str, str, bool]:
    """(subject, body, customised) for a template key."""
    if key not in DEFAULTS:
        raise ServiceError("No such email template.")
    row = db.session.scalar(select(EmailTemplate).where(EmailTemplate.key == key))
    if row is None:
        return DEFAULTS[key][1], DEFAULTS[key][2], False
    return row.subject, row.body, True


def render(key: str, variables: dict) -> tuple[str, str]:
    """(subject, plain-text body) for real variables. Falls back to the default if a saved
    template cannot render (it was checked when saved; this guards against surprises)."""
    subject, body, _ = current(key)
    try:
        return _render(subject, variables).strip(), _render(body, variables)
    except TemplateError:
        return _render(DEFAULTS[key][1], variables).strip(), _render(DEFAULTS[key][2], variables)


def check(subject: str, body: str) -> dict[str, str]:
    """Field → why it cannot be used. Renders with sample data in the sandbox."""
    errors: dict[str, str] = {}
    for field, source, limit in (("subject", subject, 300), ("body", body, 20000)):
        if not (source or "").strip():
            errors[field] = "This can't be empty."
            continue
        if len(source) > limit:
            errors[field] = f"Keep it under {limit} characters."
            continue
        try:
            rendered = _render(source, SAMPLE)
            if field == "subject" and "\n" in rendered.strip():
                errors[field] = "The subject must be one line."
        except TemplateError as exc:
            message = getattr(exc, "message", None) or str(exc)
            names = ", ".join("{{" + name + "}}" for name in VARIABLES)
            errors[field] = f"This template can't be rendered: {message}. The variables are {names}."
    return errors


def preview(subject: str, body: str) -> tuple[str, str]:
    errors = check(subject, body)
    if errors:
        error = ServiceError("The template has errors.")
        error.errors = errors
        raise error
    return _render(subject, SAMPLE).strip(), _render(body, SAMPLE)


def save(key: str, subject: str, body: str, actor: Actor) -> None:
    if key not in DEFAULTS:
        raise ServiceError("No such email template.")
    errors = check(subject, body)
    if errors:
        error = ServiceError("The template was not saved.")
        error.errors = errors
        raise error
    row = db.session.scalar(select(EmailTemplate).where(EmailTemplate.key == key))
    before = {"subject": row.subject, "body": row.body} if row else None
    if row is None:
        row = EmailTemplate(key=key, subject=subject, body=body)
        db.session.add(row)
    else:
        row.subject, row.body = subject, body
    record_event("email_template.saved", "email_template", None, actor, before=before,
                 after={"subject": subject, "body": body}, data={"key": key})
    commit()


def reset(key: str, actor: Actor) -> None:
    row = db.session.scalar(select(EmailTemplate).where(EmailTemplate.key == key))
    if row is not None:
        record_event("email_template.reset", "email_template", None, actor,
                     before={"subject": row.subject, "body": row.body}, data={"key": key})
        db.session.delete(row)
        commit()


# Hardening (F2) -------------------------------------------------------------------------
# The sandbox alone still lets a template print internals (``{{ self }}`` shows a
# TemplateReference, ``{{ range }}`` a function) and spend unbounded memory or time
# (``{{ customer_name * 10**9 }}``, nested loops, ``|center(10**9)``). Any staff member can
# preview, so templates are held to what an email needs: the documented variables, literal
# text, ``{% if %}``, comparisons and a few harmless filters. Anything else is refused
# before it runs, and only text and numbers may be printed.

from decimal import Decimal as _Decimal

from jinja2 import nodes as _nodes
from jinja2.exceptions import SecurityError as _SecurityError
from jinja2.exceptions import TemplateSyntaxError as _TemplateSyntaxError

ALLOWED_FILTERS = ("upper", "lower", "title", "capitalize", "trim", "default", "d")
_ALLOWED_NODES = (
    _nodes.Template, _nodes.Output, _nodes.TemplateData, _nodes.If, _nodes.Name, _nodes.Const, _nodes.Filter,
    _nodes.Test, _nodes.Concat, _nodes.Compare, _nodes.Operand, _nodes.And, _nodes.Or, _nodes.Not,
    _nodes.CondExpr, _nodes.Keyword,
)
_ALLOWED_TESTS = ("defined", "undefined", "none", "string", "number", "eq", "ne", "equalto", "in")


def _printable(value):
    if value is None or isinstance(value, (str, int, float, _Decimal)):
        return value
    raise _SecurityError(f"only text can be printed, not a {type(value).__name__}")


def _describe(node) -> str:
    if isinstance(node, (_nodes.Getattr, _nodes.Getitem)):
        return "reading attributes or items of a variable is not allowed"
    if isinstance(node, _nodes.Call):
        return "calling functions or methods is not allowed"
    if isinstance(node, (_nodes.For, _nodes.Macro, _nodes.CallBlock, _nodes.Assign, _nodes.AssignBlock,
                         _nodes.Include, _nodes.Import, _nodes.FromImport, _nodes.Extends, _nodes.Block,
                         _nodes.FilterBlock, _nodes.With, _nodes.Scope, _nodes.ScopedEvalContextModifier)):
        return f"{{% {type(node).__name__.lower()} %}} is not supported; use the variables and {{% if %}}"
    return f"{type(node).__name__.lower()} expressions are not supported"


class _EmailSandbox(SandboxedEnvironment):
    """The sandbox, narrowed to the documented variables and harmless constructs."""

    def _parse(self, source, name, filename):
        tree = super()._parse(source, name, filename)
        for node in tree.find_all(_nodes.Node):
            lineno = getattr(node, "lineno", 1) or 1
            if not isinstance(node, _ALLOWED_NODES):
                raise _TemplateSyntaxError(_describe(node), lineno, name, filename)
            if isinstance(node, _nodes.Name) and node.name not in VARIABLES:
                raise _TemplateSyntaxError(f"{node.name!r} is not one of the variables", lineno, name, filename)
            if isinstance(node, _nodes.Filter) and node.name not in ALLOWED_FILTERS:
                raise _TemplateSyntaxError(f"the filter {node.name!r} is not available", lineno, name, filename)
            if isinstance(node, _nodes.Test) and node.name not in _ALLOWED_TESTS:
                raise _TemplateSyntaxError(f"the test {node.name!r} is not available", lineno, name, filename)
            if isinstance(node, _nodes.Const) and isinstance(node.value, str) and len(node.value) > 1000:
                raise _TemplateSyntaxError("that text is too long for an expression", lineno, name, filename)
        return tree


_env = _EmailSandbox(undefined=StrictUndefined, autoescape=False, finalize=_printable)
_env.globals.clear()


def renderer(key: str):
    """``render`` for many emails of one key: the template is read once (one query), then
    ``renderer(key)(variables)`` → (subject, body) per email."""
    subject, body, _ = current(key)

    def render_one(variables: dict) -> tuple[str, str]:
        try:
            return _render(subject, variables).strip(), _render(body, variables)
        except TemplateError:
            return _render(DEFAULTS[key][1], variables).strip(), _render(DEFAULTS[key][2], variables)

    return render_one
