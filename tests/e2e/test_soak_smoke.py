"""A short soak (tests/soak/soak.py, `make soak` runs the long one): 15 s of
load through the real gateway with each fault once — kill -9 of the stdio
child, HTTP backend restart on the same port, a valid and an invalid reload —
and every request accounted for, no process left behind, RSS bounded."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "soak"))

import soak  # noqa: E402


def test_soak_smoke_accounts_for_every_request():
    res = soak.run_soak(seconds=15, interval=3, workers=4, rps=30, timeout=10, log=lambda *_: None)
    report = soak.report_markdown(res)
    assert res.ok, report
    kinds = [kind for _, kind, _, ok in res.faults if ok]
    for kind in ("stdio_kill", "http_restart", "reload_valid", "reload_invalid"):
        assert kind in kinds, report
    t = res.tally
    assert t.sent > 0 and t.total() == t.sent, report
    assert not any(t.counts.get((s, c)) for s in ("demo", "stdio") for c in soak.BAD), report
    # The valid reload denied `echo` on demo for the rest of the run: the
    # policy change took effect under load.
    assert t.counts.get(("demo", soak.DENIED)), report


def test_classify_rejects_unclean_answers():
    # The accounting itself can fail: these are not clean errors.
    assert soak.classify(503, b"upstream connect error")[0] == soak.UNCLEAN
    assert soak.classify(200, b'{"jsonrpc":"2.0","id":1}')[0] == soak.UNCLEAN
    assert soak.classify(502, b'{"error":"x"}')[0] == soak.UNCLEAN
    assert soak.classify(200, b"[1]")[0] == soak.UNCLEAN
    assert soak.classify(200, b'{"jsonrpc":"2.0","id":1,"result":{}}')[0] == soak.OK
    assert soak.classify(502, b'{"jsonrpc":"2.0","id":1,"error":{"code":-32050,"message":"exited"}}')[0] \
        == soak.HTTP_ERROR
    assert soak.classify(403, b'{"jsonrpc":"2.0","id":1,"error":{"code":-32003,"message":"no"}}')[0] == soak.DENIED
    assert soak.classify(200, b'{"jsonrpc":"2.0","id":1,"error":{"code":-32003,"message":"no"}}')[0] == soak.DENIED


def test_leak_check_finds_a_leftover_process():
    # The process check can fail too: a process seen in the tree and still
    # alive, or one carrying the tag, is reported until it is gone.
    import subprocess

    p = subprocess.Popen(["sh", "-c", "sleep 60; true", "soak-leak-test-tag"], start_new_session=True)
    try:
        seen = soak.descendants(soak.os.getpid())
        assert p.pid in seen
        # By tag alone, by process group alone, and by having been seen.
        assert any(f"pid {p.pid} " in f for f in soak.leftovers({}, "soak-leak-test-tag", -1))
        assert any(f"pid {p.pid} " in f for f in soak.leftovers({}, "no-such-tag-here", p.pid))
        assert any(f"pid {p.pid} " in f for f in soak.leftovers(seen, "no-such-tag-here", -1))
    finally:
        soak.os.killpg(p.pid, soak.signal.SIGKILL)
        p.wait()
    assert not any(f"pid {p.pid} " in f for f in soak.leftovers(seen, "soak-leak-test-tag", p.pid))


def test_a_request_without_answer_counts_as_hung():
    # A listener that accepts (in the kernel's backlog) and never answers.
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        category, detail = soak.one_request(s.getsockname()[1], "demo", {"jsonrpc": "2.0", "id": 1,
                                                                        "method": "tools/list"}, timeout=0.5)
    assert category == soak.HUNG, detail
