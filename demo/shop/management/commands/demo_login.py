"""``manage.py demo_login``: the demo's admin login — a superuser with a random password, made
once. For the local demo only (``scripts/demo`` runs it): never do this in a real project."""

from __future__ import annotations

import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

USERNAME = "demo-admin"


class Command(BaseCommand):
    help = "Create the demo's superuser with a random password (once) and print the login."

    def handle(self, *args: Any, **options: Any) -> None:
        users = get_user_model()
        existing = users.objects.filter(is_superuser=True).order_by("pk").first()
        if existing is not None:
            self.stdout.write(
                f"  admin login: {existing.get_username()!r} (its password was printed when it "
                f"was made; set a new one with: python manage.py changepassword "
                f"{existing.get_username()})"
            )
            return
        password = secrets.token_urlsafe(12)
        users.objects.create_superuser(USERNAME, email="", password=password)
        self.stdout.write(f"  admin login: user {USERNAME}, password {password}")
