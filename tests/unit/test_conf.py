"""conf.parse_options: typed settings, and errors that name the full settings key."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from tandem.conf import (
    DEFAULT_BACKOFF,
    DEFAULT_EXECUTOR,
    DEFAULT_LEASE_SECONDS,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_POLL_INTERVAL,
    DEFAULT_RECOVERY_MAX_ATTEMPTS,
    BackendOptions,
    PoolConfig,
    default_workers,
    parse_options,
)

QUEUES = frozenset({"default", "critical", "exports"})
OPTIONS = "TASKS['default']['OPTIONS']"
POOL = f"{OPTIONS}['pools']['critical']"


def parse(options: object, queues: frozenset[str] = QUEUES) -> BackendOptions:
    return parse_options("default", {"OPTIONS": options}, queues)


def error_of(options: object, queues: frozenset[str] = QUEUES) -> str:
    with pytest.raises(ImproperlyConfigured) as caught:
        parse(options, queues)
    return str(caught.value)


# -- valid settings ----------------------------------------------------------------------------


@pytest.mark.parametrize("params", [{}, {"OPTIONS": {}}, {"OPTIONS": None}])
def test_defaults(params):
    options = parse_options("default", params, QUEUES)

    assert options == BackendOptions(
        alias="default",
        executor=DEFAULT_EXECUTOR,
        lease_seconds=DEFAULT_LEASE_SECONDS,
        poll_interval=DEFAULT_POLL_INTERVAL,
        recovery_max_attempts=DEFAULT_RECOVERY_MAX_ATTEMPTS,
        pools=(
            PoolConfig(
                name="default",
                queues=("critical", "default", "exports"),
                workers=default_workers(),
                executor=DEFAULT_EXECUTOR,
                poll_interval=DEFAULT_POLL_INTERVAL,
                max_attempts=DEFAULT_MAX_ATTEMPTS,
                backoff=DEFAULT_BACKOFF,
            ),
        ),
    )
    assert options.heartbeat_interval == DEFAULT_LEASE_SECONDS / 3
    assert options.pools[0].async_concurrency == 100


def test_async_concurrency_is_a_pool_option():
    options = parse(
        {"pools": {"critical": {"async_concurrency": 7}, "rest": {"queues": ["default"]}}}
    )
    assert [pool.async_concurrency for pool in options.pools] == [7, 100]


def test_pools_inherit_the_backend_wide_values_and_override_them():
    options = parse(
        {
            "workers": 3,
            "poll_interval": 0.5,
            "lease_seconds": 30,
            "recovery_max_attempts": 5,
            "pools": {
                "critical": {"workers": 8, "poll_interval": 0.1, "max_attempts": 4, "backoff": 1},
                "rest": {"queues": ["default", "exports"]},
            },
        }
    )

    critical, rest = options.pools
    assert critical == PoolConfig(
        name="critical",
        queues=("critical",),  # a pool without "queues" serves the queue of its own name
        workers=8,
        executor=DEFAULT_EXECUTOR,
        poll_interval=0.1,
        max_attempts=4,
        backoff=1.0,
    )
    assert (rest.queues, rest.workers, rest.poll_interval, rest.max_attempts) == (
        ("default", "exports"),
        3,
        0.5,
        DEFAULT_MAX_ATTEMPTS,
    )
    assert (options.lease_seconds, options.recovery_max_attempts) == (30.0, 5)
    assert options.heartbeat_interval == 10.0
    assert options.pool_for_queue("exports") is rest
    assert options.pool_for_queue("critical") is critical
    assert options.pool_for_queue("unknown") is None


def test_numbers_are_floats_and_integers_ints():
    options = parse({"lease_seconds": 12, "poll_interval": 2, "pools": {"default": {}}})

    assert isinstance(options.lease_seconds, float)
    assert isinstance(options.poll_interval, float)
    assert isinstance(options.pools[0].backoff, float)
    assert isinstance(options.pools[0].workers, int)


# -- errors name the full key ------------------------------------------------------------------

BAD_VALUES = [
    # (OPTIONS, exact message)
    (
        {"executor": "bogus"},
        f"{OPTIONS}['executor'] must be one of 'subinterpreter', 'thread', 'process', got 'bogus'.",
    ),
    (
        {"executor": None},
        f"{OPTIONS}['executor'] must be one of 'subinterpreter', 'thread', 'process', got None.",
    ),
    ({"workers": 0}, f"{OPTIONS}['workers'] must be an integer >= 1, got 0."),
    ({"workers": "4"}, f"{OPTIONS}['workers'] must be an integer >= 1, got '4'."),
    ({"workers": 2.0}, f"{OPTIONS}['workers'] must be an integer >= 1, got 2.0."),
    ({"workers": True}, f"{OPTIONS}['workers'] must be an integer >= 1, got True."),
    ({"poll_interval": 0}, f"{OPTIONS}['poll_interval'] must be a finite number > 0, got 0."),
    ({"poll_interval": -1.5}, f"{OPTIONS}['poll_interval'] must be a finite number > 0, got -1.5."),
    ({"poll_interval": "1"}, f"{OPTIONS}['poll_interval'] must be a finite number > 0, got '1'."),
    (
        {"poll_interval": False},
        f"{OPTIONS}['poll_interval'] must be a finite number > 0, got False.",
    ),
    (
        {"poll_interval": float("nan")},
        f"{OPTIONS}['poll_interval'] must be a finite number > 0, got nan.",
    ),
    ({"lease_seconds": 0}, f"{OPTIONS}['lease_seconds'] must be a finite number > 0, got 0."),
    ({"lease_seconds": None}, f"{OPTIONS}['lease_seconds'] must be a finite number > 0, got None."),
    (
        {"lease_seconds": float("inf")},
        f"{OPTIONS}['lease_seconds'] must be a finite number > 0, got inf.",
    ),
    (
        {"recovery_max_attempts": 0},
        f"{OPTIONS}['recovery_max_attempts'] must be an integer >= 1, got 0.",
    ),
    (
        {"recovery_max_attempts": "3"},
        f"{OPTIONS}['recovery_max_attempts'] must be an integer >= 1, got '3'.",
    ),
    (
        {"pools": "critical"},
        f"{OPTIONS}['pools'] must be a non-empty dict of pool name -> pool settings, "
        "got 'critical'.",
    ),
    (
        {"pools": {}},
        f"{OPTIONS}['pools'] must be a non-empty dict of pool name -> pool settings, got {{}}.",
    ),
    (
        {"pools": ["critical"]},
        f"{OPTIONS}['pools'] must be a non-empty dict of pool name -> pool settings, "
        "got ['critical'].",
    ),
    ({"pools": {"critical": 8}}, f"{POOL} must be a dict, got 8."),
    (
        {"pools": {"critical": {"workers": "x"}}},
        f"{POOL}['workers'] must be an integer >= 1, got 'x'.",
    ),
    ({"pools": {"critical": {"workers": 0}}}, f"{POOL}['workers'] must be an integer >= 1, got 0."),
    (
        {"pools": {"critical": {"executor": "fork"}}},
        f"{POOL}['executor'] must be one of 'subinterpreter', 'thread', 'process', got 'fork'.",
    ),
    (
        {"pools": {"critical": {"executor": "thread", "max_tasks_per_worker": 5}}},
        f"{POOL}['max_tasks_per_worker'] recycles worker processes; it needs "
        "'executor': 'process' in that pool (it uses 'thread').",
    ),
    (
        {"pools": {"critical": {"timeout": 0}}},
        f"{POOL}['timeout'] must be a finite number > 0, got 0.",
    ),
    (
        {"pools": {"critical": {"executor": "process", "max_tasks_per_worker": 0}}},
        f"{POOL}['max_tasks_per_worker'] must be an integer >= 1, got 0.",
    ),
    (
        {"pools": {"critical": {"async_concurrency": 0}}},
        f"{POOL}['async_concurrency'] must be an integer >= 1, got 0.",
    ),
    (
        {"pools": {"critical": {"async_concurrency": True}}},
        f"{POOL}['async_concurrency'] must be an integer >= 1, got True.",
    ),
    (
        {"pools": {"critical": {"poll_interval": -1}}},
        f"{POOL}['poll_interval'] must be a finite number > 0, got -1.",
    ),
    (
        {"pools": {"critical": {"max_attempts": 0}}},
        f"{POOL}['max_attempts'] must be an integer >= 1, got 0.",
    ),
    (
        {"pools": {"critical": {"max_attempts": 2.5}}},
        f"{POOL}['max_attempts'] must be an integer >= 1, got 2.5.",
    ),
    (
        {"pools": {"critical": {"backoff": "2"}}},
        f"{POOL}['backoff'] must be a finite number > 0, got '2'.",
    ),
    (
        {"pools": {"critical": {"backoff": 0}}},
        f"{POOL}['backoff'] must be a finite number > 0, got 0.",
    ),
    (
        {"pools": {"critical": {"queues": "critical"}}},
        f"{POOL}['queues'] must be a non-empty list of queue names, got 'critical'.",
    ),
    (
        {"pools": {"critical": {"queues": []}}},
        f"{POOL}['queues'] must be a non-empty list of queue names, got [].",
    ),
    (
        {"pools": {"critical": {"queues": ["critical", 1]}}},
        f"{POOL}['queues'] must be a non-empty list of queue names, got ['critical', 1].",
    ),
    (
        {"pools": {"critical": {"queues": {"critical"}}}},
        f"{POOL}['queues'] must be a non-empty list of queue names, got {{'critical'}}.",
    ),
]


@pytest.mark.parametrize(("options", "message"), BAD_VALUES)
def test_bad_value_names_the_full_key(options, message):
    assert error_of(options) == message


def test_the_example_from_the_docstring():
    message = error_of({"pools": {"critical": {"workers": "x"}}})

    assert message == (
        "TASKS['default']['OPTIONS']['pools']['critical']['workers'] must be an integer >= 1, "
        "got 'x'."
    )


def test_the_alias_is_part_of_the_key():
    with pytest.raises(ImproperlyConfigured) as caught:
        parse_options("bulk", {"OPTIONS": {"workers": -1}}, QUEUES)

    assert (
        str(caught.value) == "TASKS['bulk']['OPTIONS']['workers'] must be an integer >= 1, got -1."
    )


def test_options_must_be_a_dict():
    assert error_of(["workers", 4]) == f"{OPTIONS} must be a dict, got ['workers', 4]."


def test_unknown_option_keys():
    assert error_of({"workers": 2, "wrokers": 4, "timeout": 3}) == (
        f"{OPTIONS} has unknown key(s) 'timeout', 'wrokers' (did you mean 'workers'?); allowed: "
        "executor, lease_seconds, max_payload_bytes, poll_interval, pools, recovery_max_attempts, "
        "retention, run_schedules, schedule, sqlite_worker_synchronous, workers."
    )


def test_unknown_pool_keys():
    assert error_of({"pools": {"critical": {"workers": 2, "concurrency": 8}}}) == (
        f"{POOL} has unknown key(s) 'concurrency' (did you mean 'async_concurrency'?); allowed: "
        "async_concurrency, backoff, executor, idle_close, idle_keep, max_attempts, "
        "max_tasks_per_worker, poll_interval, prefetch, queues, rate_limit, starvation_limit, "
        "timeout, workers."
    )


def test_a_queue_in_two_pools():
    message = error_of(
        {"pools": {"fast": {"queues": ["critical", "default"]}, "slow": {"queues": ["default"]}}}
    )

    assert message == (
        f"{OPTIONS}['pools']['slow']['queues']: queue 'default' is already served by pool 'fast'; "
        "each queue belongs to exactly one pool."
    )


def test_a_queue_twice_in_one_pool():
    message = error_of({"pools": {"critical": {"queues": ["critical", "critical"]}}})

    assert message == (
        f"{POOL}['queues']: queue 'critical' is already served by pool 'critical'; "
        "each queue belongs to exactly one pool."
    )


def test_a_pool_queue_that_is_not_in_queues():
    message = error_of({"pools": {"critical": {"queues": ["critical", "emails"]}}})

    assert message == (
        f"{POOL}['queues'] names queue 'emails', which is not in TASKS['default']['QUEUES'] "
        "(critical, default, exports)."
    )


def test_a_pool_named_after_a_queue_that_is_not_in_queues():
    message = error_of({"pools": {"emails": {"workers": 1}}})

    assert message == (
        f"{OPTIONS}['pools']['emails']['queues'] names queue 'emails', which is not in "
        "TASKS['default']['QUEUES'] (critical, default, exports)."
    )


def test_a_store_that_cannot_serve_subinterpreters_defaults_to_threads():
    blocker = (
        "the task database is MariaDB/MySQL, whose driver (mysqlclient) cannot load in a "
        "subinterpreter"
    )
    options = parse_options("default", {}, QUEUES, subinterpreter_blocker=blocker)
    assert options.executor == "thread"
    assert {pool.executor for pool in options.pools} == {"thread"}

    with pytest.raises(ImproperlyConfigured) as caught:
        parse_options(
            "default",
            {"OPTIONS": {"pools": {"critical": {"executor": "subinterpreter"}}}},
            QUEUES,
            subinterpreter_blocker=blocker,
        )
    assert str(caught.value) == (
        f"{POOL}['executor'] is 'subinterpreter', but {blocker}; use 'thread' or 'process' "
        "(or leave it unset)."
    )


def test_idle_keep_defaults_to_one_ready_interpreter_and_may_be_zero():
    def idle_keep(**pool_options):
        pools = {"default": {"queues": ["default"], **pool_options}}
        return parse_options("default", {"OPTIONS": {"pools": pools}}, QUEUES).pools[0].idle_keep

    assert idle_keep() == 1
    assert idle_keep(idle_keep=0) == 0
    assert idle_keep(idle_keep=2) == 2
    assert error_of({"pools": {"default": {"queues": ["default"], "idle_keep": True}}}) == (
        f"{OPTIONS}['pools']['default']['idle_keep'] must be an integer >= 0, got True."
    )


def test_idle_close_defaults_to_three_seconds_and_none_keeps_every_interpreter():
    def idle_close(**pool_options):
        pools = {"default": {"queues": ["default"], **pool_options}}
        return parse_options("default", {"OPTIONS": {"pools": pools}}, QUEUES).pools[0].idle_close

    assert idle_close() == 3.0
    assert idle_close(idle_close=0.5) == 0.5
    assert idle_close(idle_close=None) is None
    assert error_of({"pools": {"default": {"queues": ["default"], "idle_close": 0}}}) == (
        f"{OPTIONS}['pools']['default']['idle_close'] must be a finite number > 0, got 0."
    )
