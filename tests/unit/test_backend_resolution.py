"""``tandem.backends.tandem_backend``: the one place that finds the tandem backend of an alias."""

from __future__ import annotations

import copy

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.tasks.exceptions import InvalidTaskBackend

import tandem
from tandem.backends import NotATandemBackend, tandem_backend
from tandem.backends.base import TandemBackend


def test_a_tandem_alias_resolves_to_its_backend():
    backend = tandem_backend("default")

    assert isinstance(backend, TandemBackend)
    assert backend.alias == "default"


def test_an_unknown_alias_is_refused_by_name():
    with pytest.raises(InvalidTaskBackend) as caught:
        tandem_backend("nope")

    assert str(caught.value) == "No task backend 'nope' in settings.TASKS."


def test_another_backend_is_refused_with_its_class_and_the_tandem_ones(settings):
    settings.TASKS = {
        **copy.deepcopy(settings.TASKS),
        "dummy": {"BACKEND": "django.tasks.backends.dummy.DummyBackend"},
    }

    with pytest.raises(NotATandemBackend) as caught:
        tandem_backend("dummy")

    assert str(caught.value) == (
        "TASKS['dummy'] uses django.tasks.backends.dummy.DummyBackend, not a tandem backend "
        "(tandem.backends.database.DatabaseBackend or tandem.backends.redis.RedisBackend)."
    )
    # Both what the commands catch and what the public API raised before.
    assert isinstance(caught.value, ImproperlyConfigured)
    assert isinstance(caught.value, TypeError)
    with pytest.raises(TypeError, match=r"^TASKS\['dummy'\] uses .*, not a tandem backend"):
        tandem.pause("default", backend="dummy")
