"""RQ job functions: they take ids, call a service, and nothing else.

Each job runs inside an app context: the worker's own (worker.py pushes one),
or one made here when the job runs under a bare ``rq worker``.
"""
from __future__ import annotations

import functools

from flask import has_app_context

_app = None


def _get_app():
    global _app
    if _app is None:
        from portal import create_app

        _app = create_app()
    return _app


def job(func):
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        from portal.extensions import db

        if has_app_context():
            try:
                return func(*args, **kwargs)
            finally:
                db.session.remove()
        with _get_app().app_context():
            try:
                return func(*args, **kwargs)
            finally:
                db.session.remove()

    return wrapper


__all__ = ["job"]
