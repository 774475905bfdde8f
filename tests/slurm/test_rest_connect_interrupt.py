"""A slurmrestd address that does not answer a connect (a blackholed host: SYNs dropped) holds neither the
agent's stop nor a request past its deadline: the socket is registered for interrupt() before it connects,
and the connect waits only the time left. Real sockets: a loopback listener whose accept queue is full
(Linux drops the SYNs that come then, as a blackholed address does)."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from fabric_hpc.slurm.contract import SlurmError
from fabric_hpc.slurm.rest_backend import RestClient
from tests.slurm.conftest import jobs_in_thread


@pytest.fixture
def blackholed() -> Iterator[str]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    addr = listener.getsockname()
    fillers = []
    for _ in range(4):  # fill the accept queue (never accepted); the later SYNs are dropped
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(addr)
        fillers.append(filler)
    probe = socket.socket()
    probe.settimeout(0.5)
    try:
        answered = probe.connect_ex(addr) == 0
    except TimeoutError:  # the SYN was dropped: the address is blackholed, as the tests need
        answered = False
    finally:
        probe.close()
    if answered:
        pytest.skip("this kernel answers connects past a full accept queue")
    try:
        yield f"http://127.0.0.1:{addr[1]}"
    finally:
        for s in (*fillers, listener):
            s.close()


def test_interrupt_abandons_a_connect_that_is_not_answered(blackholed: str) -> None:
    client = RestClient(blackholed, token="x", env={}, timeout=300)
    thread, out = jobs_in_thread(client)
    for _ in range(1500):  # the socket is registered before its connect returns
        if client._open:
            break
        thread.join(0.02)
        assert thread.is_alive(), out
    else:
        pytest.fail("no socket registered for interrupt() while the connect waits")
    client.interrupt()
    thread.join(120)  # the old code waited the whole 300 s timeout
    assert not thread.is_alive()
    assert "abandoned: the agent is stopping" in str(out["error"])
    assert not client._open


def test_a_connect_that_is_not_answered_ends_at_the_deadline(blackholed: str) -> None:
    client = RestClient(blackholed, token="x", env={}, timeout=0.5)
    with pytest.raises(SlurmError, match="did not answer within 0.5 s"):
        client.jobs()
    assert not client._open
