"""A minimal Django project for ``djangoq2-redis``: django-q2 with its Redis broker."""
