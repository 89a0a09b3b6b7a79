"""The peers' apps, task modules and the enqueue driver, imported by the peers' own processes
(workers and ``python -m contenders.sites.drive``), never by the harness."""
