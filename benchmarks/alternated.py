"""Contenders built once each in their own process, then timed in alternated rounds.

Every round runs each contender once in turn on the same batch, so slow drifts of the machine's speed
hit them all alike (the order reverses every other round: going first or second is no advantage);
round 0 is a warm-up. Only one contender runs at a time: the others, with every
process they started (a server's schedulers, OpenMP threads that would spin), are stopped (SIGSTOP)
until their turn, so each may use every core.
"""

import multiprocessing
import signal
import time

import psutil


def _worker(conn, build, name: str, args: tuple) -> None:
    """``build(name, *args)``, a context manager, gives ``run(batch) -> greedy tokens``; answers batches with
    (seconds, tokens) until None."""
    with build(name, *args) as run:
        conn.send("ready")
        while (batch := conn.recv()) is not None:
            start = time.perf_counter()
            tokens = run(batch)
            conn.send((time.perf_counter() - start, tokens))


def _signal_tree(pid: int, sig: int) -> None:
    """``sig`` to a process and all its descendants."""
    root = psutil.Process(pid)
    for proc in (root, *root.children(recursive=True)):
        try:
            proc.send_signal(sig)
        except psutil.NoSuchProcess:
            pass


def time_alternated(build, names, args: tuple, batches, repeats: int):
    """({(name, batch): [seconds per timed round]}, {(name, batch): greedy tokens of the last round}).

    ``build`` must be a module-level function (the processes are spawned); contenders are built one
    after another, so start-up is neither measured nor overlapped."""
    ctx = multiprocessing.get_context("spawn")
    conns, processes = {}, []
    for name in names:
        conns[name], child = ctx.Pipe()
        processes.append(ctx.Process(target=_worker, args=(child, build, name, args), daemon=True))
        processes[-1].start()
        try:
            conns[name].recv()
        except EOFError:
            raise RuntimeError(f"contender {name!r} failed to start (its traceback is above)") from None
        _signal_tree(processes[-1].pid, signal.SIGSTOP)
    seconds = {(n, b): [] for n in names for b in batches}
    tokens = {}
    for batch in batches:
        for round_ in range(repeats + 1):
            order = list(zip(processes, conns.items()))
            for process, (name, conn) in order if round_ % 2 else order[::-1]:  # who goes first alternates
                _signal_tree(process.pid, signal.SIGCONT)
                conn.send(batch)
                took, tokens[name, batch] = conn.recv()
                _signal_tree(process.pid, signal.SIGSTOP)
                if round_:
                    seconds[name, batch].append(took)
    for process, conn in zip(processes, conns.values()):
        _signal_tree(process.pid, signal.SIGCONT)
        conn.send(None)
    for process in processes:  # each closes its contender (servers stopped, last figures printed)
        process.join()
    return seconds, tokens
