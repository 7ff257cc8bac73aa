"""Adapters: one per outside service (ARM inventory, metrics, run command, tables, queues ...).

Each adapter is handed its SDK client (built in one place elsewhere) and turns SDK objects into
tunnelwatch's own dataclasses at this boundary, so the analysis code never sees SDK types.
"""
