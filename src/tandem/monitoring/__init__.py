"""Seeing tandem work: the staff dashboard, ``tandem status``, Prometheus metrics and health checks.

Include the views with ``path("tasks/", include("tandem.monitoring.urls"))``.
"""
