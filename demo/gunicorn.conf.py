"""gunicorn configuration for the demo: tandem's workers run inside each gunicorn worker process.

    cd demo && gunicorn -c gunicorn.conf.py

``post_worker_init`` starts a supervisor in every worker process once it has loaded the
application (never in the arbiter, which forks); ``worker_exit`` drains it when the worker exits,
releasing what is still running at 80% of ``graceful_timeout``, before gunicorn's SIGKILL.
"""

from tandem.embedded import post_worker_init, worker_exit  # noqa: F401  (gunicorn hooks)

wsgi_app = "demosite.wsgi:application"
bind = "127.0.0.1:8000"
workers = 2  # two worker processes: two supervisors, each with the demo's two pools
graceful_timeout = 30
