"""Notifications: what tunnelwatch tells people when a finding flips. Pure, like shared/core:
no azure import, no I/O, "now" passed in; the sender and the outbox are adapters and jobs.

webhook.py  a flip as a CloudEvents 1.0 JSON event, signed per Standard Webhooks
"""
