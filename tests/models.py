"""Models the test tasks write to (a ledger of runs)."""

from django.db import models


class Ledger(models.Model):
    """One row per execution of a ledger task: how many times each task really ran."""

    key = models.CharField(max_length=100)
    worker = models.CharField(max_length=200, blank=True, default="")

    class Meta:
        app_label = "tests"

    def __str__(self) -> str:
        return f"{self.key} ({self.worker})"
