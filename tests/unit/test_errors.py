"""Every exception mirrorfleet defines derives from one base, as dnspython's do, so
a caller can catch all of them in one clause; the CLI's one-line errors are a
subclass of it."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import mirrorfleet
from mirrorfleet.errors import MirrorfleetError, UserError


def defined_exceptions() -> list[type[BaseException]]:
    found = []
    for info in pkgutil.walk_packages(mirrorfleet.__path__, "mirrorfleet."):
        module = importlib.import_module(info.name)
        found += [
            obj
            for _, obj in inspect.getmembers(module, inspect.isclass)
            if issubclass(obj, BaseException) and obj.__module__ == module.__name__
        ]
    return found


def test_every_exception_derives_from_the_base() -> None:
    classes = defined_exceptions()
    assert {c.__name__ for c in classes} >= {"BadSignature", "SyncError", "StampUnavailable"}
    assert [c for c in classes if not issubclass(c, MirrorfleetError)] == []


def test_user_errors_are_mirrorfleet_errors() -> None:
    assert issubclass(UserError, MirrorfleetError)
