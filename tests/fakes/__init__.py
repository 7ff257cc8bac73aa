"""Small in-memory fakes of the jobs' ports (shared/jobs/ports.py), for job tests that run in
milliseconds. Each fake passes the same contract suite as the real adapter (tests/contracts/).

    storage.py   finding store, probe queue, probe ledger
    arm.py       inventory, service tags, SNAT metrics, run command
"""
