"""The Celery app that transcend's workers run: dagster-celery's own, set so that a worker killed in the middle of a
step does not lose the step.

Start workers with `celery -A transcend_pipeline.celery_worker worker --pool solo -Q dagster`
(docs/scaling-out.md). dagster-celery's default app acknowledges a task when a
worker receives it: a worker killed by `SIGKILL`, the OOM killer or a lost
machine takes the step with it, and the run waits for its result forever.
Here a task is acknowledged only once its step has finished (Celery's
`task_acks_late`), so the broker gives a dead worker's step to another one and
the same run completes, with the step's events from the worker that finished it:
- RabbitMQ requeues a worker's unacknowledged task as soon as its connection
  drops (0.2 s after a `SIGKILL` in tests/test_distributed_lake.py). Its
  `consumer_timeout` (30 min by default) must exceed the longest step, or it
  closes a healthy worker's channel and the step runs again.
- Redis hands an unacknowledged task to another worker once it has been out for
  the visibility timeout, $TRANSCEND_CELERY_VISIBILITY_TIMEOUT seconds (below),
  which must exceed the longest step for the same reason.

Only settings change: the tasks and queue are `dagster_celery.app`'s, and the
broker comes from $CELERY_BROKER_URL and $CELERY_RESULT_BACKEND, never a file.
"""

from __future__ import annotations

from dagster_celery.app import app

from transcend_pipeline.settings import positive_int

VISIBILITY_TIMEOUT_VARIABLE = "TRANSCEND_CELERY_VISIBILITY_TIMEOUT"
#: Longer than a month's steps on a small worker (a recent month parses in 0.6 h per core, README), far from Redis's
#: default of 1 h, which a long download or a one-core worker exceeds.
DEFAULT_VISIBILITY_TIMEOUT_S = 6 * 3600
#: How often an idle worker looks for tasks out past the timeout (kombu's default sweep is every 100 s).
RESTORE_SWEEP_S = 5

app.conf.update(
    task_acks_late=True,
    # A task being run counts against the prefetch until acknowledged: a busy solo worker then holds no other task.
    worker_prefetch_multiplier=1,
    broker_transport_options={  # read by the Redis transport only
        **app.conf.broker_transport_options,
        "visibility_timeout": positive_int(VISIBILITY_TIMEOUT_VARIABLE, default=DEFAULT_VISIBILITY_TIMEOUT_S),
        "unacked_restore_interval": RESTORE_SWEEP_S,
        "unacked_restore_throttle": 1,
    },
)
