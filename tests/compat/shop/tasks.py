"""Tasks of the compatibility project: one with Django's ``@task`` that validates its input with
pydantic (imported when it runs, as a project's task code would use it), and one made by the
``django_tasks`` backport's ``@task`` with a tandem extra."""

from __future__ import annotations

from typing import Any

import django_tasks
from django.tasks import task

from tests.tasks import where


@task
def validate_order(order: dict[str, Any]) -> dict[str, Any]:
    import pydantic

    class Order(pydantic.BaseModel):
        sku: str
        quantity: pydantic.PositiveInt

    valid = Order.model_validate(order)
    return {"order": valid.model_dump(), "pydantic": pydantic.VERSION, **where.call()}


@django_tasks.task(max_attempts=3)
def backported(name: str) -> dict[str, Any]:
    return {"hello": name, **where.call()}
