"""trainer.threads=auto: one rank's share of the cores nobody else is using; an integer as given."""

import time

import pytest

from mimetic.runtime.threads import busy_elsewhere, choose_threads


def test_auto_takes_the_free_cores_shared_by_the_ranks_of_the_node(monkeypatch):
    cores = [0, 1, 2, 3]
    assert choose_threads("auto", environ={}, busy=0.0, cores=cores).threads == 4
    assert choose_threads("auto", environ={}, busy=1.1, cores=cores).threads == 3  # one core taken elsewhere
    assert choose_threads("auto", environ={"LOCAL_WORLD_SIZE": "2"}, busy=0.0, cores=cores).threads == 2
    assert choose_threads("auto", environ={"LOCAL_WORLD_SIZE": "2"}, busy=2.0, cores=cores).threads == 1
    assert choose_threads("auto", environ={}, busy=7.5, cores=cores).threads == 1  # never zero
    monkeypatch.setattr("mimetic.runtime.threads.busy_elsewhere", lambda cores: None)  # no /proc/stat
    assert choose_threads("auto", environ={}, cores=cores).threads == 4  # unmeasurable: the affinity alone
    busy = choose_threads("auto", environ={}, busy=1.0, cores=[0, 1])
    assert busy.threads == 1 and "busy" in busy.reason


def test_an_explicit_choice_wins():
    assert choose_threads("3", environ={}, busy=5.0, cores=[0, 1]).threads == 3
    assert choose_threads("auto", environ={"OMP_NUM_THREADS": "1"}, busy=0.0, cores=[0, 1, 2, 3]).threads == 1


def test_a_process_spinning_on_another_core_is_seen_as_busy():
    import multiprocessing as mp

    cores = list(range(2))
    ctx = mp.get_context("fork")
    stop = ctx.Event()

    def spin(event):
        while not event.is_set():
            pass

    worker = ctx.Process(target=spin, args=(stop,))
    worker.start()
    try:
        time.sleep(0.1)
        busy = busy_elsewhere(cores, sample_s=0.3)
    finally:
        stop.set()
        worker.join()
    if busy is None:
        pytest.skip("/proc/stat is not readable here")
    assert busy > 0.6  # the spinning child, not this process (which sleeps while it samples)


def test_the_key_is_validated_and_not_part_of_the_run_identity():
    from helpers import composed

    from mimetic.errors import ConfigError
    from mimetic.train.config import load_config, run_identity

    assert run_identity(load_config(composed("trainer.threads=1"))) == run_identity(load_config(composed()))
    with pytest.raises(ConfigError, match="trainer.threads must be auto or a positive integer"):
        load_config(composed("trainer.threads=many"))
