"""Cron schedules: ``OPTIONS["schedule"]`` and ``@tandem.schedule`` -> unique ticks -> enqueue.

``registry`` holds the decorator's schedules and merges them with the settings'; ``core`` is the
``Scheduler`` a supervisor steps; ``report`` is ``manage.py tandem schedule``.
"""
