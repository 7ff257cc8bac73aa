"""The product's pure domain rules that are not analysis: no azure import, no I/O, "now" passed in.

lifecycle.py  a finding's lifecycle: new, reopened, resolved, held; scope; damping
incidents.py  incidents: a node's (pool's, cluster's) findings grouped while any is open
"""
