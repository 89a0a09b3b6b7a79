"""A minimal Django project for tandem's benchmark harness (``bench/run.py``)."""
