"""Signing in, passwords, invitations and portal links, for both kinds of principal.

Staff users and client contacts are separate tables and separate sessions
ids (``staff:…`` / ``contact:…``), so neither can be mistaken for the other.
Answers never reveal whether an email is known.
"""
from __future__ import annotations

from flask import current_app
from sqlalchemy import func, select

from portal import clock
from portal.extensions import db
from portal.models import Contact, StaffUser
from portal.models.people import STAFF_ROLES, new_nonce
from portal.services import sessions, tokens
from portal.services.errors import NotFound, ServiceError
from portal.services.events import SYSTEM, Actor, commit, queue_email, record_event
from portal.services.links import external_url
from portal.services.passwords import (
    hash_password,
    needs_rehash,
    password_problem,
    verify_password,
)
from portal.services.settings import get_business

PRINCIPALS = {"staff": StaffUser, "contact": Contact}


def normalise_email(email: str | None) -> str:
    return (email or "").strip().lower()


def load_principal(user_id: str):
    """Flask-Login's loader: ``kind:id:nonce`` → the principal, or None."""
    try:
        kind, raw_id, nonce = user_id.split(":", 2)
        model = PRINCIPALS[kind]
        principal = db.session.get(model, int(raw_id))
    except (ValueError, KeyError):
        return None
    if principal is None or principal.session_nonce != nonce or not principal.is_active:
        return None
    return principal


def _find_staff(email: str) -> StaffUser | None:
    return db.session.scalar(select(StaffUser).where(StaffUser.email == normalise_email(email)))


def find_portal_contact(email: str) -> Contact | None:
    return db.session.scalar(
        select(Contact)
        .where(func.lower(Contact.email) == normalise_email(email), Contact.portal_access.is_(True))
        .order_by(Contact.id)
        .limit(1)
    )


def _find(kind: str, email: str):
    return _find_staff(email) if kind == "staff" else find_portal_contact(email)


def authenticate(kind: str, email: str, password: str):
    """The principal if the email and password match an active login, else None.

    Takes as long for an unknown email as for a wrong password.
    """
    principal = _find(kind, email)
    stored = principal.password_hash if principal is not None else None
    if not verify_password(stored, password) or principal is None or not principal.is_active:
        return None
    if needs_rehash(principal.password_hash):
        principal.password_hash = hash_password(password)
    principal.last_login_at = clock.now()
    record_event(f"{kind}.signed_in", kind, principal.id, Actor.of(principal))
    commit()
    return principal


def request_password_reset(kind: str, email: str) -> None:
    """Email a single-use reset link if the login exists. Says nothing either way."""
    principal = _find(kind, email)
    if principal is None or not principal.is_active:
        return
    raw = tokens.issue("password_reset", principal, current_app.config["PASSWORD_RESET_TTL"])
    endpoint = "auth.staff_reset" if kind == "staff" else "auth.portal_reset"
    event = record_event("password.reset_requested", kind, principal.id, SYSTEM)
    queue_email(
        principal.email,
        "password_reset",
        {
            "business": get_business(),
            "principal": principal,
            "link": external_url(endpoint, token=raw),
            "ttl_minutes": int(current_app.config["PASSWORD_RESET_TTL"].total_seconds() // 60),
        },
        event=event,
        subject_type=kind,
        subject_id=principal.id,
        redact=[raw],
    )
    commit()


def issue_reset_link(email: str) -> tuple[str, str]:
    """A fresh single-use reset link, printed by ``flask portal reset-link`` instead of emailed (so the
    owner's own link never has to be read from the Emails page). An active staff user first, else a
    portal contact. Returns ``(kind, link)``; the link is built from PORTAL_BASE_URL."""
    for kind in ("staff", "contact"):
        principal = _find(kind, email)
        if principal is not None and principal.is_active:
            break
    else:
        raise ServiceError(f"No active staff user or portal contact has the email {normalise_email(email)}.",
                           field="email")
    raw = tokens.issue("password_reset", principal, current_app.config["PASSWORD_RESET_TTL"])
    record_event("password.reset_link_issued", kind, principal.id, SYSTEM, data={"via": "cli"})
    commit()
    return kind, external_url("auth.staff_reset" if kind == "staff" else "auth.portal_reset", token=raw)


def check_token(purpose: str, raw: str, kind: str) -> bool:
    token = tokens.find_usable(purpose, raw)
    return token is not None and token.principal_kind == kind


def _set_password(principal, password: str) -> None:
    problem = password_problem(password, principal.email)
    if problem:
        raise ServiceError(problem, field="password")
    principal.password_hash = hash_password(password)
    principal.session_nonce = new_nonce()  # ends every other session


def reset_password(kind: str, raw: str, password: str):
    """Use a reset link once: set the password and end other sessions."""
    token = tokens.find_usable("password_reset", raw)
    if token is None or token.principal_kind != kind:
        raise ServiceError("This link has expired or was already used. Ask for a new one.")
    principal = db.session.get(PRINCIPALS[kind], token.principal_id)
    if principal is None or not principal.is_active:
        raise ServiceError("This link has expired or was already used. Ask for a new one.")
    _set_password(principal, password)
    if not tokens.consume(token):
        db.session.rollback()
        raise ServiceError("This link has expired or was already used. Ask for a new one.")
    tokens.revoke_all("password_reset", principal)
    sessions.end_all(principal, "password_reset")  # the caller signs this browser in afresh
    record_event("password.reset", kind, principal.id, Actor.of(principal))
    commit()
    return principal


def create_staff(email: str, password: str, role: str = "staff", name: str = "") -> StaffUser:
    email = normalise_email(email)
    if role not in STAFF_ROLES:
        raise ServiceError(f"Role must be one of {', '.join(STAFF_ROLES)}.", field="role")
    if "@" not in email:
        raise ServiceError("Enter a valid email address.", field="email")
    if _find_staff(email) is not None:
        raise ServiceError("A staff user with this email already exists.", field="email")
    user = StaffUser(email=email, name=name, role=role, active=True)
    _set_password(user, password)
    db.session.add(user)
    db.session.flush()
    record_event("staff.created", "staff", user.id, SYSTEM, after={"email": email, "role": role})
    commit()
    return user


def list_staff() -> list[StaffUser]:
    return list(db.session.scalars(select(StaffUser).order_by(StaffUser.active.desc(), StaffUser.email)))


def get_staff(user_id: int) -> StaffUser:
    user = db.session.get(StaffUser, user_id)
    if user is None:
        raise NotFound("There is no such staff user.")
    return user


def deactivate_staff(user: StaffUser, actor: Actor) -> StaffUser:
    """The owner turns a staff login off: it can no longer sign in, and its sessions end at once."""
    if actor.kind == "staff" and actor.id == user.id:
        raise ServiceError("You can't deactivate yourself.")
    if user.is_owner and user.active:
        owners = db.session.scalar(select(func.count()).select_from(StaffUser)
                                   .where(StaffUser.role == "owner", StaffUser.active.is_(True)))
        if owners <= 1:
            raise ServiceError("The business needs at least one active owner.")
    if user.active:
        user.active = False
        user.session_nonce = new_nonce()
        tokens.revoke_all("password_reset", user)
        ended = sessions.end_all(user, "deactivated")
        record_event("staff.deactivated", "staff", user.id, actor, before={"active": True}, after={"active": False},
                     data={"sessions_ended": ended})
    commit()
    return user


def reactivate_staff(user: StaffUser, actor: Actor) -> StaffUser:
    if not user.active:
        user.active = True
        record_event("staff.reactivated", "staff", user.id, actor, before={"active": False}, after={"active": True})
    commit()
    return user


def _portal_email_taken(contact: Contact) -> bool:
    other = find_portal_contact(contact.email)
    return other is not None and other.id != contact.id


def invite_contact(contact: Contact, actor: Actor) -> str:
    """Give a contact a portal login: email them a link to set a password."""
    if _portal_email_taken(contact):
        raise ServiceError("Another contact already signs in to the portal with this email.")
    contact.portal_access = True
    tokens.revoke_all("portal_invite", contact)
    raw = tokens.issue("portal_invite", contact, current_app.config["PORTAL_INVITE_TTL"], actor.id)
    link = external_url("auth.portal_invite", token=raw)
    event = record_event("contact.invited", "contact", contact.id, actor, data={"client_id": contact.client_id})
    queue_email(
        contact.email,
        "portal_invite",
        {"business": get_business(), "contact": contact, "link": link,
         "ttl_days": current_app.config["PORTAL_INVITE_TTL"].days},
        event=event,
        subject_type="contact",
        subject_id=contact.id,
        redact=[raw],
    )
    commit()
    return link


def accept_invite(raw: str, password: str) -> Contact:
    token = tokens.find_usable("portal_invite", raw)
    contact = db.session.get(Contact, token.principal_id) if token else None
    if token is None or contact is None or not contact.portal_access:
        raise ServiceError("This invitation has expired or was already used. Ask for a new one.")
    _set_password(contact, password)
    if not tokens.consume(token):
        db.session.rollback()
        raise ServiceError("This invitation has expired or was already used. Ask for a new one.")
    contact.last_login_at = clock.now()
    record_event("contact.accepted_invite", "contact", contact.id, Actor.of(contact))
    commit()
    return contact


def create_portal_link(contact: Contact, actor: Actor, send: bool) -> str:
    """A magic sign-in link for a contact; optionally emailed to them."""
    if _portal_email_taken(contact):
        raise ServiceError("Another contact already signs in to the portal with this email.")
    contact.portal_access = True
    raw = tokens.issue("portal_link", contact, current_app.config["PORTAL_LINK_TTL"], actor.id)
    link = external_url("auth.portal_magic", token=raw)
    event = record_event(
        "contact.portal_link_created", "contact", contact.id, actor,
        data={"client_id": contact.client_id, "emailed": send},
    )
    if send:
        queue_email(
            contact.email,
            "portal_link",
            {"business": get_business(), "contact": contact, "link": link,
             "ttl_days": current_app.config["PORTAL_LINK_TTL"].days},
            event=event,
            subject_type="contact",
            subject_id=contact.id,
            redact=[raw],
        )
    commit()
    return link


def use_portal_link(raw: str) -> Contact:
    token = tokens.find_usable("portal_link", raw)
    contact = db.session.get(Contact, token.principal_id) if token else None
    if token is None or contact is None or not contact.portal_access or not tokens.consume(token):
        db.session.rollback()
        raise ServiceError("This sign-in link has expired or was already used. Ask for a new one.")
    contact.last_login_at = clock.now()
    record_event("contact.signed_in", "contact", contact.id, Actor.of(contact), data={"via": "portal_link"})
    commit()
    return contact


def revoke_portal_access(contact: Contact, actor: Actor) -> None:
    contact.portal_access = False
    contact.session_nonce = new_nonce()
    for purpose in ("portal_invite", "portal_link", "password_reset"):
        tokens.revoke_all(purpose, contact)
    sessions.end_all(contact, "access_revoked")
    record_event("contact.portal_access_revoked", "contact", contact.id, actor)
    commit()


# The client portal's profile page (/portal/profile) ----------------------------------------------
# Added for F4 (client portal): a contact edits their own name and phone and changes their password.

def update_own_profile(contact: Contact, name: str, phone: str) -> Contact:
    """The signed-in contact's own name and phone (the email is staff's to change)."""
    from portal.services import restrictions

    restrictions.ensure_allowed(contact.client, "profile")
    name, phone = (name or "").strip(), (phone or "").strip()
    if not name:
        raise ServiceError("Enter your name.", field="name")
    if len(name) > 200:
        raise ServiceError("Use at most 200 characters.", field="name")
    if len(phone) > 50:
        raise ServiceError("Use at most 50 characters.", field="phone")
    before = {"name": contact.name, "phone": contact.phone}
    contact.name, contact.phone = name, phone or None
    after = {"name": contact.name, "phone": contact.phone}
    if after != before:
        record_event("contact.profile_updated", "contact", contact.id, Actor.of(contact), before=before, after=after,
                     data={"client_id": contact.client_id})
    commit()
    return contact


def change_own_password(principal, current: str, new: str, keep_session: int | None = None):
    """Change the signed-in principal's (contact's or staff user's) own password: the current one is
    required; every other session ends at once, ``keep_session`` (this browser's) carries on (the caller
    signs it in again with the new nonce)."""
    if not verify_password(principal.password_hash, current or ""):
        raise ServiceError("That isn't your current password.", field="current_password")
    _set_password(principal, new or "")
    ended = sessions.end_all(principal, "password_changed", keep=keep_session)
    record_event("password.changed", principal.kind, principal.id, Actor.of(principal),
                 data={"sessions_ended": ended})
    commit()
    return principal
