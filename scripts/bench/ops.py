"""bench/ops: the CPython side of the performance table (fork start method).

CONCUR_PARAM_OP names the operation, CONCUR_PARAM_N the count, and
CONCUR_PARAM_ROUNDS how many times it runs (default 1: a whole Pool map is
one round); the result ({"ops": per second}) is appended to
$CONCUR_METRICS, as concur.report does.
"""
import json
import multiprocessing as mp
import multiprocessing.connection
import os
import threading
import time

OP = os.environ["CONCUR_PARAM_OP"]
N = int(os.environ.get("CONCUR_PARAM_N", "1000"))
ROUNDS = int(os.environ.get("CONCUR_PARAM_ROUNDS", "1"))


def noop():
    pass


def start_join():
    for _ in range(N):
        p = mp.Process(target=noop)
        p.start()
        p.join()


def _put_all(q, item):
    for _ in range(N):
        q.put(item)


def queue_transfer(item):
    q = mp.Queue(1000)
    p = mp.Process(target=_put_all, args=(q, item))
    p.start()
    for _ in range(N):
        q.get()
    p.join()


def queue_int():
    queue_transfer(42)


def queue_1k():
    queue_transfer("x" * 1024)


def _send_all(w):
    for i in range(N):
        w.send(i)


def pipe_oneway():
    r, w = mp.Pipe(False)
    p = mp.Process(target=_send_all, args=(w,))
    p.start()
    for _ in range(N):
        r.recv()
    p.join()


def _echo(b):
    for _ in range(N):
        b.send(b.recv())


def pipe_rtt():
    a, b = mp.Pipe()
    p = mp.Process(target=_echo, args=(b,))
    p.start()
    for i in range(N):
        a.send(i)
        a.recv()
    p.join()


def lock():
    lk = mp.Lock()
    for _ in range(N):
        lk.acquire()
        lk.release()


def _value_work(v):
    lock = v.get_lock()  # as ops.lua: the lock is found once
    for _ in range(N // 2):
        with lock:
            v.value += 1


def value_incr():
    v = mp.Value("i", 0)
    p = mp.Process(target=_value_work, args=(v,))
    p.start()
    _value_work(v)
    p.join()
    assert v.value == (N // 2) * 2


def _dict_work(d, lk):
    for _ in range(N // 2):
        with lk:
            d["count"] = d["count"] + 1


def manager_dict():
    with mp.Manager() as m:
        d, lk = m.dict(count=0), m.Lock()
        p = mp.Process(target=_dict_work, args=(d, lk))
        p.start()
        _dict_work(d, lk)
        p.join()
        assert d["count"] == (N // 2) * 2


def inc(x):
    return x + 1


def ident(x):
    return x


def pool_map(items):
    with mp.Pool(2) as pool:
        assert len(pool.map(inc, items)) == N


# What an operation works on, made before the clock starts.
INPUTS = {"pool_map": lambda: list(range(N))}


def apply_async():
    with mp.Pool(2) as pool:
        rs = [pool.apply_async(ident, (i,)) for i in range(N)]
        for r in rs:
            r.get()


def _pong(ping, pong):
    for _ in range(N):
        ping.wait()
        ping.clear()
        pong.set()


def event_rtt():
    ping, pong = mp.Event(), mp.Event()
    p = mp.Process(target=_pong, args=(ping, pong))
    p.start()
    for _ in range(N):
        ping.set()
        pong.wait()
        pong.clear()
    p.join()


def _wait_echo(q1, q2, q3):
    for _ in range(N):
        mp.connection.wait([q1._reader, q3._reader])
        q2.put(q1.get())


def wait_rtt():
    q1, q2, q3 = mp.Queue(), mp.Queue(), mp.Queue()
    p = mp.Process(target=_wait_echo, args=(q1, q2, q3))
    p.start()
    for i in range(N):
        q1.put(i)
        q2.get()
    p.join()


def thread_start_join():
    for _ in range(N):
        t = threading.Thread(target=noop)
        t.start()
        t.join()


def _rss_kb(q):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                q.put(int(line.split()[1]))


def memory():
    q = mp.Queue()
    p = mp.Process(target=_rss_kb, args=(q,))
    p.start()
    kb = q.get()
    p.join()
    print(f"idle child RSS {kb} KiB")
    with open(os.environ["CONCUR_METRICS"], "a") as f:
        f.write(json.dumps({"child_rss_kb": kb, "ops": 1}) + "\n")


if __name__ == "__main__":
    mp.set_start_method("fork")
    if OP == "memory":
        memory()
        raise SystemExit(0)
    fn = globals()[OP]
    args = (INPUTS[OP](),) if OP in INPUTS else ()
    t0 = time.monotonic()
    for _ in range(ROUNDS):
        fn(*args)
    elapsed = time.monotonic() - t0
    done = N * ROUNDS
    print(f"{OP}: {done} in {elapsed:.3f} s, {done / elapsed:.0f} ops/s")
    with open(os.environ["CONCUR_METRICS"], "a") as f:
        f.write(json.dumps({"ops": done / elapsed, "n": done, "elapsed": elapsed}) + "\n")
