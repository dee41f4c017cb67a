"""One run over several processes: the strategy, this process's role, agreement and stopping.

The cluster comes from `TF_CONFIG`, the JSON that Kubernetes' TFJob, Ray's TensorflowTrainer and
most launchers set: {"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker",
"index": i}}. Worker 0 (or the task of type "chief") is the chief: the only process that writes
into model_dir. All workers run the same steps; every collective (the step's all-reduce, a
barrier) waits for all of them, at most `--collective_timeout_s` seconds.

The stop protocol: a SIGINT/SIGTERM only sets a flag in the process that receives it; the flag
rides in the train step's existing all-reduce (see steps.Steps.train_step), so every worker
learns of it at the same step and all save one checkpoint there and stop.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import weakref

import numpy as np
import tensorflow as tf

# What a lost or hung peer raises out of a collective (TF's heartbeats, or the timeout).
PEER_ERRORS = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError)
_AGREEMENT_BYTES = 16384  # the JSON of what workers must agree on, padded to a fixed length


def num_tasks() -> int:
    """Chief and worker tasks listed in the TF_CONFIG environment variable (0 without it)."""
    cluster = json.loads(os.environ.get("TF_CONFIG") or "{}").get("cluster", {})
    return sum(len(cluster.get(job, [])) for job in ("chief", "worker"))


def is_chief_task() -> bool:
    """False only where TF_CONFIG names this process a non-chief task of a multi-task cluster."""
    spec = json.loads(os.environ.get("TF_CONFIG") or "{}")
    task, jobs = spec.get("task", {}), spec.get("cluster", {})
    if num_tasks() <= 1 or not task or task.get("type") == "chief":
        return True
    return task.get("type") == "worker" and task.get("index", 0) == 0 and "chief" not in jobs


def make_strategy(config) -> tf.distribute.Strategy:
    """The strategy of `config.strategy`.

    auto: MultiWorkerMirroredStrategy when TF_CONFIG lists several tasks, MirroredStrategy when
    several GPUs are visible, else the default strategy (one device). multi_worker forces the
    first (one worker without TF_CONFIG), mirrored the second (over GPUs, else logical CPUs).
    """
    if config.strategy == "multi_worker" or (config.strategy == "auto" and num_tasks() > 1):
        options = tf.distribute.experimental.CommunicationOptions(
            timeout_seconds=config.collective_timeout_s
        )
        return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    gpus = tf.config.list_logical_devices("GPU")
    if config.strategy == "default" or (config.strategy == "auto" and len(gpus) < 2):
        return tf.distribute.get_strategy()
    devices = [d.name for d in gpus or tf.config.list_logical_devices("CPU")]
    return tf.distribute.MirroredStrategy(devices)


def distribute(strategy, dataset: tf.data.Dataset):
    """`dataset` of global batches, split across replicas and workers by DATA sharding.

    Every worker builds the same global batches and keeps its replicas' rows (worker 0 the
    first), so the global batch and its order are those of one worker.
    """
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return strategy.experimental_distribute_dataset(dataset.with_options(options))


@dataclasses.dataclass(frozen=True)
class Role:
    """This process in the run: `is_chief` (writes model_dir), `index` and `num_workers`."""

    is_chief: bool = True
    index: int = 0
    num_workers: int = 1

    def __str__(self):
        if self.num_workers == 1:
            return "one worker"
        return f"worker {self.index} of {self.num_workers}" + (" (chief)" if self.is_chief else "")


def role(strategy: tf.distribute.Strategy) -> Role:
    """This process's Role under `strategy` (a one-worker Role for local strategies)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    spec = resolver.cluster_spec() if resolver is not None else None
    if not spec or not spec.jobs or resolver.task_type is None:
        return Role()
    jobs = [job for job in ("chief", "worker") if job in spec.jobs]
    sizes = {job: spec.num_tasks(job) for job in jobs}
    offset = sizes.get("chief", 0) if resolver.task_type == "worker" else 0
    index = offset + resolver.task_id  # the chief first: the order of replica ids
    return Role(index == 0, index, sum(sizes.values()))


def check_agreement(strategy, role: Role, values: dict) -> None:
    """Raises ValueError on every worker unless all workers passed equal `values`.

    values: JSON-serialisable fields (the config, the compute dtype, the restored step...).
    The error names each differing field with the chief's value and the other's.
    """
    if role.num_workers == 1:
        return
    text = json.dumps(values, sort_keys=True).encode()
    if len(text) > _AGREEMENT_BYTES:
        raise ValueError(f"The run's settings take {len(text)} bytes; at most {_AGREEMENT_BYTES}.")
    codes = np.zeros([1, _AGREEMENT_BYTES], np.int32)
    codes[0, : len(text)] = np.frombuffer(text, np.uint8)

    @tf.function
    def gather():
        local = strategy.run(lambda: tf.constant(codes))
        return strategy.gather(local, axis=0)  # [replicas, bytes], the chief's first (one tensor)

    rows = [bytes(row[row > 0].astype(np.uint8)).decode() for row in gather().numpy()]
    chief = json.loads(rows[0])
    lines = []
    for worker, row in enumerate(rows):
        other = json.loads(row)
        lines += [
            f"{key}: {chief.get(key)!r} (chief) vs {other.get(key)!r} (replica {worker})"
            for key in sorted(set(chief) | set(other))
            if chief.get(key) != other.get(key)
        ]
    if lines:
        raise ValueError(
            "The workers disagree; give every worker the same flags and a shared model_dir. "
            f"Differing: {'; '.join(dict.fromkeys(lines))}."
        )


_BARRIERS = weakref.WeakKeyDictionary()  # strategy -> compiled barrier


def barrier(strategy: tf.distribute.Strategy) -> None:
    """Returns once every worker has reached it (an all-reduce of ones)."""
    if strategy not in _BARRIERS:

        def all_reduce_ones():
            return strategy.reduce("SUM", strategy.run(tf.ones, args=([],)), axis=None)

        _BARRIERS[strategy] = tf.function(all_reduce_ones)
    _BARRIERS[strategy]().numpy()


def other_tasks() -> list[str]:
    """The device names (/job:J/replica:0/task:I) of the tasks TF_CONFIG lists besides this one."""
    spec = json.loads(os.environ.get("TF_CONFIG") or "{}")
    task = spec.get("task", {})
    me = (task.get("type"), task.get("index", 0))
    return [
        f"/job:{job}/replica:0/task:{index}"
        for job in ("chief", "worker")
        for index in range(len(spec.get("cluster", {}).get(job, [])))
        if (job, index) != me
    ]


def describe_peer_error(error: Exception, timeout_s: int) -> str:
    """One line for an error a collective raised when another worker died or hung."""
    message = getattr(error, "message", str(error))
    tasks = sorted(set(re.findall(r"/job:\w+/replica:\d+/task:\d+", message)))
    if tasks:
        who = f"task {', '.join(tasks)}"
    else:  # a collective's timeout names no task: with one peer, TF_CONFIG says which it was
        peers = other_tasks()
        who = f"task {peers[0]}" if len(peers) == 1 else "another worker"
    cause = "stopped sending heartbeats" if "heartbeat" in message else "did not answer"
    if isinstance(error, tf.errors.DeadlineExceededError):
        cause = f"did not answer within --collective_timeout_s={timeout_s}"
    return (
        f"{who} {cause} ({type(error).__name__}); this worker stopped too. The last checkpoint "
        "in model_dir is intact: restart all workers with the same command to resume."
    )
