"""The probe worker: one `probe-requests` message -> run command(s) on one node -> findings.

One code path for the queue-triggered function and the tests. Everything outside (the
inventory, run command, Table Storage, the queues, the clock) comes in through ProbeDeps.

For each message, in this order, and nothing reaches a node before the last check passed:
1. decode and validate the message (ProbeRequest.from_json); a bad one (not JSON, a field
   outside its rule, a wrong type, too big) is dropped: logged with its size, digest and a short
   redacted excerpt, and recorded in the ledger's `~refused` partition; never raised, which
   would only make the host deliver it again (maxDequeueCount) and then poison it;
2. the ledger: a request already handled (final outcome, or a retry already queued for this
   attempt) is dropped: a queue delivers at least once, results are written once;
3. look every identifier up in the inventory (subscription we watch, cluster, node resource
   group, scale set, instance); anything unknown is refused, nothing runs;
4. skip what must not or cannot be probed (tagged off, Windows, stopped) with the reason;
5. build the parameters from the inventory only and validate them (shared.probe.params);
6. run the one constant script; act on the outcome:
   - output -> parse -> node findings -> stored under the probe's own scope; a triage queues
     DEEP probes of the nodes it found unreachable (and re-checks of nodes with open deep
     findings), within `deep_limit`;
   - 409 busy, 429 throttled, other failures -> the same request, one attempt later, as a NEW
     message with a visibility delay (exponential, with the 429's Retry-After as a floor),
     never an immediate retry; after `max_attempts` the message goes to the poison queue;
   - 403 -> a COVERAGE finding saying which permission or setting is missing; no retry;
   - 409 OperationNotAllowed (stopped), 404 (scaled in) -> skipped with the reason.
A poison message (ours after the last attempt, or the host's after repeated exceptions) is
handled by `handle_poison`: an INCONCLUSIVE finding for that node, recorded without resolving
anything.
"""

from __future__ import annotations

import hashlib
import logging
import random
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from shared.analysis.findings import Finding, Kind
from shared.checks.node import node_findings
from shared.checks.probe_outcomes import denied_finding, gave_up_finding, unreadable_finding
from shared.core.lifecycle import Coverage, FindingState, Observation
from shared.core.probe_claims import REFUSED_PARTITION, LedgerEntry, ProbeStatus
from shared.core.runcommand import Failure, RunOutcome
from shared.errors import ArmError, InputError
from shared.inventory.model import Estate
from shared.jobs.ports import FindingRecords, Inventory, ProbeClaims, ProbeSender, RunCommandFor
from shared.jobs.probe_plan import (
    PlannedRun,
    Resolved,
    deep_follow_ups,
    peers_of,
    plan_runs,
    resolve_request,
    scope_of,
)
from shared.probe import script_text
from shared.probe.output import parse_probe_output, target_results
from shared.probe_requests import MAX_ATTEMPTS, ProbeKind, ProbeRequest, excerpt, printable
from shared.redaction import redact

__all__ = ["MessageOutcome", "ProbeDeps", "ProbeOptions", "handle_poison", "handle_probe_message"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ProbeOptions:
    subscriptions: tuple[str, ...]
    max_attempts: int = 5  # run-command attempts of one request (busy, throttled, failed)
    busy_delay_seconds: int = 90  # first delay after a 409; doubles per attempt
    retry_delay_seconds: int = 60  # first delay after throttling or a failure; doubles
    max_delay_seconds: int = 3600
    deep_limit: int = 10  # deep probes one triage may ask for
    # Run commands per cycle (PROBE_BUDGET), shared by its triages, deep probes and retries;
    # None: no limit (tests of one message).
    budget: int | None = None
    # How long a poison message waits for an inventory it can be checked against.
    poison_patience_hours: int = 6
    # A RUNNING claim older than this is a dead worker's: host.json functionTimeout (20 min)
    # plus a margin.
    lease_minutes: int = 25

    def __post_init__(self) -> None:
        if not 1 <= self.max_attempts <= MAX_ATTEMPTS:
            raise ValueError(f"max_attempts must be 1-{MAX_ATTEMPTS}, got {self.max_attempts}")


@dataclass
class ProbeDeps:
    inventory: Inventory  # subscription -> a fresh (or briefly cached) estate
    runner_for: RunCommandFor  # subscription -> run command client
    store: FindingRecords
    ledger: ProbeClaims
    queue: ProbeSender  # probe-requests: retries and deep probes
    poison: ProbeSender  # probe-requests-poison
    clock: Callable[[], datetime]
    script: str = field(default_factory=script_text)
    jitter: Callable[[], float] = field(default=random.random)  # 0..1, spreads retries


@dataclass(frozen=True, slots=True)
class MessageOutcome:
    """What handling one delivery of a probe-requests or poison message did: the ledger
    status it reached, the run commands it cost, its findings and what it queued."""

    # None: a message we could not even read (dropped; recorded under the ledger's ~refused)
    status: ProbeStatus | None
    detail: str
    run_commands: int = 0
    findings: tuple[Finding, ...] = ()
    follow_ups: tuple[ProbeRequest, ...] = ()  # queued: retry, deep probes, poison


def handle_probe_message(
    text: str, options: ProbeOptions, deps: ProbeDeps, *, message_id: str = ""
) -> MessageOutcome:
    """One delivery of one message. `message_id` is the queue's id of the message, the same
    on every redelivery of it: a worker that finds its own message's RUNNING claim knows the
    worker before it died and runs it again. Without one, each call is its own delivery."""
    try:
        request = ProbeRequest.from_json(text, "probe-requests message")
    except InputError as exc:
        return _drop_unreadable(text, exc, deps, message_id, "probe-requests")
    seen = deps.ledger.get(request.run_id, request.request_id)
    if seen is not None and (
        seen.status.final or (seen.status is ProbeStatus.RETRY and seen.attempt >= request.attempt)
    ):
        log.info(
            "probe %s (attempt %d) already handled: %s; dropped",
            request.request_id, request.attempt, seen.status.value,
        )  # fmt: skip
        return MessageOutcome(seen.status, f"duplicate delivery: already {seen.status.value}")
    return _Worker(request, options, deps, message_id or uuid.uuid4().hex).run()


class _Worker:
    def __init__(
        self, request: ProbeRequest, options: ProbeOptions, deps: ProbeDeps, owner: str = ""
    ) -> None:
        self.request = request
        self.options = options
        self.deps = deps
        self.now = deps.clock()
        self.owner = owner
        self.estate: Estate | None = None  # read once per message
        self.run_commands = 0  # this delivery's
        self.earlier = 0  # the earlier attempts' (from the ledger), so the row counts them all

    def _entry(self, status: ProbeStatus, detail: str) -> LedgerEntry:
        r = self.request
        return LedgerEntry(
            r.run_id, r.request_id, status, r.attempt, r.kind.value, r.cluster_id,
            f"{r.vmss}/{r.instance_id}", detail, self.earlier + self.run_commands, self.now,
            self.owner,
        )  # fmt: skip

    def _record(self, status: ProbeStatus, detail: str) -> None:
        self.deps.ledger.put(self._entry(status, detail))

    def _finish(
        self, status: ProbeStatus, detail: str, findings: Sequence[Finding] = (),
        follow_ups: Sequence[ProbeRequest] = (),
    ) -> MessageOutcome:  # fmt: skip
        self._record(status, detail)
        log.info(
            "probe %s %s of %s/%s (cluster %s, attempt %d): %s, %d run commands",
            self.request.request_id, self.request.kind.value, self.request.vmss,
            self.request.instance_id, self.request.cluster_id, self.request.attempt,
            detail, self.run_commands,
        )  # fmt: skip
        return MessageOutcome(status, detail, self.run_commands, tuple(findings), tuple(follow_ups))

    def run(self) -> MessageOutcome:
        r = self.request
        try:
            estate = self.deps.inventory(r.subscription)
        except ArmError as exc:
            # ARM is not answering: nothing is known about the node yet, so nothing is
            # decided; the same request later, like a failed run command.
            log.warning("probe %s: inventory read failed: %s", r.request_id, exc.kind)
            failed = RunOutcome(failure=Failure.FAILED, code=exc.kind, message=str(exc))
            return self._later(f"inventory read failed: {exc.kind}", failed)
        self.estate = estate
        try:
            resolved = resolve_request(r, estate, self.options.subscriptions)
        except InputError as exc:
            log.warning("refused probe %s: %s", r.request_id, exc)
            return self._finish(ProbeStatus.REFUSED, f"refused: {exc.message}")
        if isinstance(resolved, str):
            return self._finish(ProbeStatus.SKIPPED, f"skipped: {resolved}")
        try:
            runs, notes = plan_runs(r.kind, resolved)
        except InputError as exc:
            return self._finish(ProbeStatus.REFUSED, f"refused: inventory value unsafe: {exc}")
        if resolved.note:
            notes.insert(0, resolved.note)
        ours, row = self.deps.ledger.claim(
            self._entry(ProbeStatus.RUNNING, "; ".join(notes) or "running"),
            lease=timedelta(minutes=self.options.lease_minutes),
        )
        if not ours:
            log.info(
                "probe %s (attempt %d) is %s elsewhere; dropped",
                r.request_id, r.attempt, row.status.value,
            )  # fmt: skip
            return MessageOutcome(row.status, f"duplicate delivery: already {row.status.value}")
        self.earlier = row.run_commands
        budget = self.options.budget
        if budget is not None and not self.deps.ledger.spend(r.run_id, len(runs), budget):
            why = (
                f"skipped: over the budget of {budget} run commands of {r.run_id} "
                "(PROBE_BUDGET); the next cycle probes again"
                if budget
                else "skipped: node probes are off (PROBE_BUDGET 0)"
            )
            return self._finish(ProbeStatus.SKIPPED, why)
        return self._probe(resolved, runs, notes)

    def _probe(
        self, resolved: Resolved, runs: list[PlannedRun], notes: list[str]
    ) -> MessageOutcome:
        runner = self.deps.runner_for(self.request.subscription)
        findings: list[Finding] = []
        complete = True
        reasons: list[str] = []
        for planned in runs:
            outcome = runner.run(
                resolved.cluster.node_resource_group,
                resolved.pool.vmss_name or "",
                resolved.instance.instance_id,
                self.deps.script,
                planned.parameters,
            )
            self.run_commands += 1
            if outcome.failure is not None:
                return self._failed(resolved, outcome)
            part, ok, why = self._read(resolved, planned, outcome)
            findings += part
            if not ok:
                complete = False
                reasons.append(why)
        return self._store(resolved, findings, complete, reasons, notes)

    def _read(
        self, resolved: Resolved, planned: PlannedRun, outcome: RunOutcome
    ) -> tuple[list[Finding], bool, str]:
        """Findings of one run command's output; False (with why) when nothing was decided."""
        output = outcome.output
        if output is None:  # _probe only reads outcomes without a failure, which have output
            raise ValueError("a run outcome without output")
        node = resolved.instance.computer_name
        source = f"probe of {node}"
        try:
            report = parse_probe_output(output.stdout, source)
        except InputError as exc:
            stderr = output.stderr.strip().splitlines()[-1:] or [""]
            why = f"{exc}; stderr: {stderr[0][:200]}"
            return (
                [unreadable_finding(resolved.cluster, resolved.pool, node, why, self.now)],
                False,
                why,
            )
        subnet = self._subnet_prefix(resolved)
        triage = self.request.kind is ProbeKind.TRIAGE
        peers = planned.peers if triage else _sources(resolved)
        try:
            found = node_findings(
                report,
                cluster=resolved.cluster,
                pool=resolved.pool,
                instance=resolved.instance,
                peers=peers,
                source_subnet=subnet,
                now=self.now,
            )
        except InputError as exc:
            why = f"findings could not be computed: {exc}"
            return (
                [unreadable_finding(resolved.cluster, resolved.pool, node, why, self.now)],
                False,
                why,
            )
        if not report.complete:
            return found, False, "; ".join(report.reasons) or "incomplete report"
        if triage:
            # A cut or partly untested target list must not close findings about the nodes
            # it did not name: the write is then partial, which holds them open.
            gaps = target_results(report, list(planned.peers)).gaps
            if gaps:
                return found, False, "; ".join(gaps)
        return found, True, ""

    def _unreadable(self, resolved: Resolved, why: str) -> Finding:
        return unreadable_finding(
            resolved.cluster, resolved.pool, resolved.instance.computer_name, why, self.now
        )

    def _subnet_prefix(self, resolved: Resolved) -> str | None:
        hit = self.estate.subnet(resolved.pool.node_subnet_id) if self.estate else None
        if hit is None or not hit[1].prefixes:
            return None
        return hit[1].prefixes[0]

    def _store(
        self, resolved: Resolved, findings: list[Finding], complete: bool, reasons: list[str],
        notes: list[str],
    ) -> MessageOutcome:  # fmt: skip
        r = self.request
        scope = scope_of(r.kind, resolved.pool, resolved.instance)
        unique = list({f.fingerprint: f for f in findings}.values())
        coverage = Coverage.COMPLETE if complete else Coverage.PARTIAL
        self.deps.store.record_cluster(
            Observation(
                resolved.cluster.id, coverage, tuple(unique), scope=scope,
                reason="; ".join(reasons)[:500],
            ),
            run_id=r.run_id,
            now=self.now,
        )  # fmt: skip
        follow_ups: list[ProbeRequest] = []
        if r.kind is ProbeKind.TRIAGE:
            open_scopes = self._open_scopes(resolved)
            gone = self._retire_gone(resolved, open_scopes)
            if gone:
                names = ", ".join(g.split(":", 2)[2] for g in gone)
                notes.append(f"resolved the findings of {len(gone)} node(s)/pool(s) gone from "
                             f"the cluster: {names}"[:300])  # fmt: skip
                open_scopes -= set(gone)
            # A cut or partly untested triage still decided the nodes it named: those get
            # their deep probe; re-checks wait for a triage that read everything.
            rechecks = _deep_nodes(open_scopes) if complete else []
            follow_ups, left = deep_follow_ups(
                r, resolved, unique, rechecks, limit=self.options.deep_limit, now=self.now,
            )  # fmt: skip
            notes += left
            for request in follow_ups:
                self.deps.queue.send(request)
        problems = sum(1 for f in unique if f.kind is Kind.PROBLEM)
        detail = (
            f"{len(unique)} findings ({problems} problems), {len(follow_ups)} deep probes queued"
        )
        if notes:
            detail += "; " + "; ".join(notes)
        status = ProbeStatus.DONE
        return self._finish(status, detail, unique, follow_ups)

    def _open_scopes(self, resolved: Resolved) -> set[str]:
        """The probe scopes (probe:triage:<pool>, probe:deep:<node>) with open findings."""
        return {
            stored.scope
            for stored in self.deps.store.current_findings(
                resolved.cluster.id, state=FindingState.OPEN
            )
            if stored.scope.startswith("probe:")
        }

    def _retire_gone(self, resolved: Resolved, open_scopes: set[str]) -> list[str]:
        """Resolve the open findings of nodes and pools the cluster no longer has (scaled in,
        deleted): no probe will ever write their scope again; the scopes resolved. Only from
        a whole inventory: a scale set that could not be listed must not look empty."""
        if self.estate is None or self.estate.errors:
            return []
        cluster = resolved.cluster
        nodes = {i.computer_name for p in cluster.pools for i in p.instances}
        pools = {p.name for p in cluster.pools}
        gone = sorted(
            scope
            for scope in open_scopes
            if (scope.startswith("probe:deep:") and scope.removeprefix("probe:deep:") not in nodes)
            or (
                scope.startswith("probe:triage:")
                and scope.removeprefix("probe:triage:") not in pools
            )
        )
        for scope in gone:
            self.deps.store.record_cluster(
                Observation(cluster.id, Coverage.COMPLETE, (), scope=scope, retired=True),
                run_id=self.request.run_id,
                now=self.now,
            )
        return gone

    def _failed(self, resolved: Resolved, outcome: RunOutcome) -> MessageOutcome:
        r = self.request
        node = resolved.instance.computer_name
        what = f"{outcome.failure}: {outcome.status or ''} {outcome.code} {outcome.message}".strip()
        if outcome.failure is Failure.DENIED:
            finding = denied_finding(
                resolved.cluster, resolved.pool, node, outcome.code, outcome.message, self.now
            )
            self.deps.store.record_cluster(
                Observation(
                    resolved.cluster.id, Coverage.PARTIAL, (finding,),
                    scope=scope_of(r.kind, resolved.pool, resolved.instance),
                    reason=f"run command denied: {outcome.code}",
                ),
                run_id=r.run_id,
                now=self.now,
            )  # fmt: skip
            return self._finish(ProbeStatus.DENIED, what, (finding,))
        if outcome.failure in (Failure.NOT_RUNNING, Failure.NOT_FOUND):
            return self._finish(ProbeStatus.SKIPPED, f"skipped: {what}")
        return self._later(what, outcome)

    def _later(self, what: str, outcome: RunOutcome) -> MessageOutcome:
        """The same request once more, after a delay; to the poison queue after the last."""
        r = self.request
        if r.attempt >= self.options.max_attempts:
            self.deps.poison.send(r)
            return self._finish(
                ProbeStatus.POISONED, f"gave up after {r.attempt} attempts: {what}", (), (r,)
            )
        delay = self._delay(outcome)
        later = r.retry()
        self.deps.queue.send(later, delay_seconds=delay)
        return self._finish(ProbeStatus.RETRY, f"retry in {delay}s: {what}", (), (later,))

    def _delay(self, outcome: RunOutcome) -> int:
        o = self.options
        base = o.busy_delay_seconds if outcome.failure is Failure.BUSY else o.retry_delay_seconds
        delay = base * 2 ** (self.request.attempt - 1)
        delay = max(delay, outcome.retry_after or 0)
        # Up to a quarter more, at random: retries of many nodes do not land together.
        delay = int(delay * (1 + 0.25 * self.deps.jitter()))
        return min(delay, o.max_delay_seconds)


def _sources(resolved: Resolved) -> dict[str, str]:
    """The addresses a deep probe evaluates its rules for: the other nodes of the cluster."""
    peers = peers_of(resolved.cluster, resolved.instance)
    return dict(list(peers.items())[:64])  # enough to show every rule that treats them apart


def handle_poison(text: str, options: ProbeOptions, deps: ProbeDeps) -> MessageOutcome:
    """A request out of attempts: an INCONCLUSIVE finding for its node; nothing is resolved."""
    try:
        request = ProbeRequest.from_json(text, "probe-requests-poison message")
    except InputError as exc:
        return _drop_unreadable(text, exc, deps, "", "probe-requests-poison")
    seen = deps.ledger.get(request.run_id, request.request_id)
    if seen is not None and seen.status.final and seen.status is not ProbeStatus.POISONED:
        # A stale or second copy of a request that ended: nothing is missing.
        log.info("poison copy of probe %s dropped: already %s", request.request_id, seen.status)
        return MessageOutcome(seen.status, f"poison dropped: already {seen.status.value}")
    if seen is not None:
        # The ledger's count, not the message's: the attempts that really ran.
        request = replace(request, attempt=max(1, min(seen.attempt, request.attempt)))
    worker = _Worker(request, options, deps)
    worker.earlier = seen.run_commands if seen is not None else 0
    try:
        estate = deps.inventory(request.subscription)
    except ArmError as exc:
        return _poison_later(request, options, deps, worker.now, exc)
    try:
        resolved = resolve_request(request, estate, options.subscriptions)
    except InputError as exc:
        return worker._finish(ProbeStatus.REFUSED, f"poison refused: {exc.message}")
    if isinstance(resolved, str):
        return worker._finish(ProbeStatus.SKIPPED, f"poison skipped: {resolved}")
    last = seen.detail if seen is not None else "the host gave up on this message (repeated errors)"
    finding = gave_up_finding(
        resolved.cluster, resolved.pool, resolved.instance.computer_name,
        request.kind.value, request.attempt, last, worker.now,
    )  # fmt: skip
    deps.store.record_cluster(
        Observation(
            resolved.cluster.id, Coverage.PARTIAL, (finding,),
            scope=scope_of(request.kind, resolved.pool, resolved.instance),
            reason=f"probe gave up after {request.attempt} attempts",
        ),
        run_id=request.run_id,
        now=worker.now,
    )  # fmt: skip
    return worker._finish(ProbeStatus.POISONED, f"inconclusive recorded: {last}", (finding,))


def _poison_later(
    request: ProbeRequest, options: ProbeOptions, deps: ProbeDeps, now: datetime, exc: ArmError
) -> MessageOutcome:
    """The inventory could not be read, so the node cannot be named in a finding: the poison
    message goes back on the poison queue, delayed, rather than through the host's retries
    (3 in 3 minutes, then a queue nobody reads and a finding never written). Until the
    request is `poison_patience_hours` old; then it is logged and dropped."""
    why = f"inventory read failed: {exc.kind}: {str(exc)[:200]}"
    if now - request.requested_at > timedelta(hours=options.poison_patience_hours):
        log.error(
            "poison probe %s of %s dropped after %d hours: %s",
            request.request_id, request.cluster_id, options.poison_patience_hours, why,
        )  # fmt: skip
        return MessageOutcome(None, f"poison dropped: {why}")
    deps.poison.send(request, delay_seconds=options.max_delay_seconds // 4)
    log.warning("poison probe %s put back for later: %s", request.request_id, why)
    return MessageOutcome(None, f"poison put back for later: {why}", follow_ups=(request,))


def _drop_unreadable(
    text: str, exc: InputError, deps: ProbeDeps, message_id: str, queue: str
) -> MessageOutcome:
    """A message that is not a probe request: logged and recorded, then dropped (returned,
    never raised). What is kept of it: its size, a digest that tells copies apart, and a
    short, escaped, redacted excerpt; the reason names the field and what is wrong."""
    digest = hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()[:16]
    start = redact(excerpt(text[:200], 120))
    why = redact(str(exc))[:600]
    detail = f"refused: {why}"
    msg_id = printable(message_id)[:100]  # the host's id of the message, not its content
    log.warning(
        "dropped an unreadable %s message %s (%d characters, sha256 %s, starts %s): %s",
        queue, msg_id or "-", len(text), digest, start, why,
    )  # fmt: skip
    now = deps.clock()
    entry = LedgerEntry(
        REFUSED_PARTITION, f"{now:%Y%m%dT%H%M%S%fZ}-{queue}-{digest}", ProbeStatus.REFUSED, 0,
        queue, "", "", f"{detail}; {len(text)} characters, sha256 {digest}, starts {start}", 0,
        now, msg_id,
    )  # fmt: skip
    try:
        deps.ledger.put(entry)
    except Exception:  # the record is a courtesy: the message is dropped all the same
        log.exception("could not record the dropped %s message %s", queue, digest)
    return MessageOutcome(None, detail)


def _deep_nodes(scopes: set[str]) -> list[str]:
    """Nodes whose earlier deep probe left open findings: a triage re-checks them."""
    return sorted(s.removeprefix("probe:deep:") for s in scopes if s.startswith("probe:deep:"))
