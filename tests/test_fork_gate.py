"""The shared supervisor never forks a runner while a request thread is working (ForkGate in
jobctl/supervisor/shared.py): a child forked while another thread holds a lock inherits it held."""

from __future__ import annotations

import threading

from jobctl.supervisor.shared import ForkGate


def test_a_fork_waits_for_the_requests_in_progress():
    gate = ForkGate()
    order: list[str] = []
    entered, release = threading.Event(), threading.Event()

    def request() -> None:
        with gate.working():
            entered.set()
            assert release.wait(30)
            order.append("request done")

    def fork() -> None:
        with gate.forking():
            order.append("fork")

    worker = threading.Thread(target=request)
    worker.start()
    assert entered.wait(30)
    forker = threading.Thread(target=fork)
    forker.start()
    forker.join(0.3)
    assert forker.is_alive() and order == []  # held back while the request works
    release.set()
    forker.join(30)
    worker.join(30)
    assert order == ["request done", "fork"]


def test_a_request_that_arrives_during_a_fork_waits_for_it():
    gate = ForkGate()
    order: list[str] = []
    forking, done = threading.Event(), threading.Event()

    def fork() -> None:
        with gate.forking():
            forking.set()
            assert done.wait(30)
            order.append("fork")

    def request() -> None:
        with gate.working():
            order.append("request")

    forker = threading.Thread(target=fork)
    forker.start()
    assert forking.wait(30)
    worker = threading.Thread(target=request)
    worker.start()
    worker.join(0.3)
    assert worker.is_alive() and order == []
    done.set()
    forker.join(30)
    worker.join(30)
    assert order == ["fork", "request"]


def test_requests_work_together_when_nobody_forks():
    gate = ForkGate()
    inside = threading.Barrier(4, timeout=30)  # all four inside at once, or the barrier breaks

    def request() -> None:
        with gate.working():
            inside.wait()

    threads = [threading.Thread(target=request) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not inside.broken
