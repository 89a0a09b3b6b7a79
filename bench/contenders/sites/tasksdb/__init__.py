"""django-tasks-db's project for ``tasksdb-*``: settings and the ``mark`` task."""
