"""The product's pure domain rules that are not analysis: no azure import, no I/O, "now" passed in.

lifecycle.py  a finding's lifecycle: new, reopened, resolved, held; scope; damping
incidents.py  incidents: a node's (pool's, cluster's) findings grouped while any is open

and the values the jobs' ports (shared/jobs/ports.py) speak in, so no job imports an adapter:
records.py       a scan run's record, and what one cluster's write did (RecordResult)
runcommand.py    a run command's outcome (output, or a Failure the worker acts on)
probe_claims.py  the probe ledger's entries and their status
metrics.py       SNAT metrics asked for (MetricsTarget) and read (MetricsRead)
arm_calls.py     ARM call counts (CallCounts)
"""
