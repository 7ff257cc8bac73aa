"""Walking a NEW inbound packet through the INPUT path of one or several rulesets.

The path of a locally delivered packet, each table only if the dump has it:
raw PREROUTING -> mangle PREROUTING -> nat PREROUTING -> mangle INPUT -> filter INPUT ->
security INPUT -> nat INPUT. ACCEPT ends the current hook; DROP/REJECT end everything.

A rule whose matches cannot be decided forks the walk: one branch assumes it matches, the
other that it does not. Every branch runs to its end; the verdict stands only if all branches
agree, otherwise it is unknown. Branches, steps and jump depth are bounded, so a loop or a
pathological dump ends as "unknown", never as a hang.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from shared.analysis.iptables.model import (
    HIDDEN,
    HIDDEN_IFACE,
    HIDDEN_LO,
    Ctx,
    DecidedBy,
    Entry,
    IptablesRuleset,
    IptablesUndecided,
    IptablesVerdict,
    Packet,
    PacketVerdict,
    PendingRule,
    Rule,
    TargetKind,
    TraceStep,
)
from shared.analysis.shell import command
from shared.analysis.walk import (
    Assumption,
    Limits,
    Outcome,
    WalkAborted,
    agreed,
    drain,
    hex_mark,
    other_blocks,
    path_summary,
    same_on_every_path,
    split,
    undecided_of,
    with_next_packets,
)
from shared.errors import InputError

__all__ = ["HOOKS", "INCOMPLETE", "Limits", "evaluate_input", "evaluate_ruleset"]

HOOKS: tuple[tuple[str, str], ...] = (
    ("raw", "PREROUTING"),
    ("mangle", "PREROUTING"),
    ("nat", "PREROUTING"),
    ("mangle", "INPUT"),
    ("filter", "INPUT"),
    ("security", "INPUT"),
    ("nat", "INPUT"),
)


@dataclass(slots=True)
class _Frame:
    rs: IptablesRuleset
    table: str
    chain: str
    rules: list[Entry]  # the chain's live list: rules compiled on the way stay compiled
    index: int = 0


@dataclass(slots=True)
class _Branch:
    ctx: Ctx
    hook: int = 0
    stack: list[_Frame] = field(default_factory=list)
    trace: list[TraceStep] = field(default_factory=list)
    # An undecided rule and what this path assumes of it: True/False (matches or not), or
    # for a jump to a chain the capture lacks, what that chain does ("KUBE-X accepts" ...).
    assumed: list[tuple[IptablesUndecided, Assumption]] = field(default_factory=list)
    force: bool = False  # the next rule is taken as matching (the "matches" side of a fork)
    accepted_by: DecidedBy | None = None
    accepted_rs: IptablesRuleset | None = None

    def fork(self) -> _Branch:
        return _Branch(
            self.ctx.copy(),
            self.hook,
            [_Frame(f.rs, f.table, f.chain, f.rules, f.index) for f in self.stack],
            list(self.trace),
            list(self.assumed),
            self.force,
            self.accepted_by,
            self.accepted_rs,
        )


class _Outcome(Outcome[DecidedBy, TraceStep, IptablesUndecided, IptablesRuleset]):
    """A path's end; its origin is the ruleset that decided."""

    __slots__ = ()


INCOMPLETE = "capture incomplete"
_NO_FILTER = (
    "{} has no filter table INPUT chain, so it cannot show that the packet "
    "is let in (it may have been cut before it; if the node really has no filter table, "
    "nothing filters INPUT there: capture the whole `iptables-save` to be sure)"
)

_LISTED_NO_FILTER = (
    "{} lists only {} and no filter INPUT chain, the one that decides what comes in: capture "
    "`{}` (or `{}`)"
)


def _no_filter(rs: IptablesRuleset) -> str:
    """Why a capture without a filter INPUT chain cannot say ACCEPT, and what to capture."""
    if rs.format != "list":
        return _NO_FILTER.format(rs.source)
    shown = ", ".join(f"{t.name} {c}" for t in rs.tables.values() for c in t.chains) or "nothing"
    cmd = rs.command()
    listing = command(cmd, "-L", "INPUT", "-n", "-v", "--line-numbers")
    return _LISTED_NO_FILTER.format(rs.source, shown, listing, command(f"{cmd}-save"))


_CUT_TABLE = (
    "{} ends inside table {} (no COMMIT), so the tables iptables-save prints after it are not "
    "in it; of the tables on the INPUT path it lacks: {}"
)


# Tables where a chain the capture lacks can only accept, drop, reject or return (and mark).
_BOUNDED_TABLES = frozenset(("filter", "security"))


def _ctx(packet: Packet) -> Ctx:
    dst = None if packet.dst is None else int(packet.dst)
    return Ctx(
        packet.family,
        int(packet.src),
        dst,
        packet.proto_number() or 0,  # Packet refuses unknown protocols
        packet.dport,
        packet.sport,
        packet.in_iface,
        packet.src,
        packet.dst,
    )


class _Walker:
    def __init__(self, rulesets: Sequence[IptablesRuleset], limits: Limits) -> None:
        self.limits = limits
        # Rulesets in force at once (legacy and nft) hook in at the same priorities: at each
        # hook every ruleset's chain runs, in the order given, on the same packet and marks.
        # A table cut before it declared a hook's chain (no COMMIT) keeps the hook: the
        # chain may exist on the node, and the walk stops there undecided.
        self.hooks = [
            (rs, t, c)
            for t, c in HOOKS
            for rs in rulesets
            if t in rs.tables and (c in rs.tables[t].chains or rs.tables[t].cut)
        ]
        # Captures that may have been cut before their filter INPUT chain: they cannot say
        # that the packet is accepted (dropped, by a rule they show, they can).
        self.no_filter = [
            _no_filter(rs)
            for rs in rulesets
            if not rs.whole
            and not ("filter" in rs.tables and "INPUT" in rs.tables["filter"].chains)
        ]
        # An iptables-save capture cut inside a table lacks the tables printed after it, and
        # the order of tables differs between backends: any of those absent may exist.
        self.cut_tables = [
            _CUT_TABLE.format(
                rs.source,
                name,
                ", ".join(t for t in dict.fromkeys(t for t, _ in HOOKS) if t not in rs.tables)
                or "none",
            )
            for rs in rulesets
            for name, table in rs.tables.items()
            if table.cut
        ]
        self.multi = len(rulesets) > 1
        self.work: list[_Branch] = []
        self.finished: list[_Outcome] = []  # paths that ended inside another path's step
        self.steps = 0

    def run(self, br: _Branch) -> _Outcome:
        """Runs one branch to its end, queueing the other side of every fork."""
        while True:
            if not br.stack:
                if br.hook >= len(self.hooks) and self.no_filter:
                    why = "; ".join(self.no_filter)
                    return self._missing(br, "filter", "INPUT", why)
                if br.hook >= len(self.hooks) and self.cut_tables:
                    table, chain = HOOKS[-1]
                    return self._missing(br, table, chain, "; ".join(self.cut_tables))
                if br.hook >= len(self.hooks):
                    return _Outcome(
                        PacketVerdict.ACCEPT,
                        br.accepted_by,
                        tuple(br.trace),
                        tuple(br.assumed),
                        origin=br.accepted_rs,
                    )
                rs, table, chain = self.hooks[br.hook]
                if table == "nat" and (br.ctx.untracked or br.ctx.established):
                    why = "untracked (NOTRACK)" if br.ctx.untracked else "not a first packet"
                    br.trace.append(TraceStep(table, chain, None, None, f"skip: {why}"))
                    br.hook += 1
                    continue
                br.ctx.tracked = table != "raw"  # conntrack runs after raw PREROUTING
                if chain not in rs.tables[table].chains:
                    why = f"{table} {chain} is not in it: {rs.tables[table].cut}"
                    return self._missing(br, table, chain, why, rs)
                br.stack.append(_Frame(rs, table, chain, rs.chain_entries(table, chain)))
            frame = br.stack[-1]
            if frame.index >= len(frame.rules):
                cut = frame.rs.tables[frame.table].chains[frame.chain].cut
                if cut and not frame.rs.whole:  # a producer that proved it whole outranks it
                    why = f"rules of {frame.table} {frame.chain} may follow: {cut}"
                    return self._missing(br, frame.table, frame.chain, why, frame.rs)
                out = self._leave(br, explicit=False)
                if out is not None:
                    return out
                continue
            entry = frame.rules[frame.index]
            self.steps += 1
            if self.steps > self.limits.steps:
                raise WalkAborted(f"more than {self.limits.steps} rule checks")
            if isinstance(entry, PendingRule):
                ctx = br.ctx
                if any(c.test(ctx) is False for c in entry.quick):
                    frame.index += 1
                    continue  # cannot match: no need to read the rest of it
                rule = frame.rs.finish(frame.table, frame.chain, frame.index)
            else:
                rule = entry
            frame.index += 1
            if br.force:
                br.force = False
            else:
                reasons: list[str] = []
                matched = True
                ctx = br.ctx
                for cond in rule.conds:
                    r = cond.test(ctx)
                    if r is False:
                        matched = False
                        break
                    if r is None:
                        reasons.append(cond.reason)
                if not matched:
                    continue
                if reasons:
                    kind = rule.target.kind
                    if kind in (TargetKind.NONE, TargetKind.CONTINUE):
                        continue  # matching or not, nothing changes
                    u = IptablesUndecided(
                        frame.table, frame.chain, rule.number, rule.text, "; ".join(reasons)
                    )
                    other = split(br, self.work, u, taken=True, untaken=False)
                    other.stack[-1].index -= 1  # runs this rule again, as matching
                    other.force = True
                    continue
            out = self._apply(br, frame, rule)
            if out is not None:
                return out

    def _missing(
        self, br: _Branch, table: str, chain: str, why: str, rs: IptablesRuleset | None = None
    ) -> _Outcome:
        """The end of a path whose next step the capture does not show."""
        br.trace.append(TraceStep(table, chain, None, None, "capture incomplete"))
        reason = f"{INCOMPLETE}: {why}"
        return _Outcome(
            PacketVerdict.UNKNOWN, None, tuple(br.trace), tuple(br.assumed), reason, origin=rs
        )

    def _step(self, br: _Branch, frame: _Frame, rule: Rule, action: str) -> None:
        br.trace.append(
            TraceStep(
                frame.table,
                frame.chain,
                rule.number,
                rule.text,
                action,
                frame.rs.source if self.multi else "",
            )
        )

    def _apply(self, br: _Branch, frame: _Frame, rule: Rule) -> _Outcome | None:
        t = rule.target
        k = t.kind
        if k is TargetKind.ACCEPT or k is TargetKind.NAT_ACCEPT:
            self._step(
                br, frame, rule, "accept" if k is TargetKind.ACCEPT else f"{t.name}: end of nat"
            )
            by = DecidedBy(frame.table, frame.chain, rule.number, rule.text)
            self._end_hook(br, by, frame.rs)
            return None
        if k is TargetKind.DROP or k is TargetKind.REJECT:
            verdict = PacketVerdict.DROP if k is TargetKind.DROP else PacketVerdict.REJECT
            self._step(br, frame, rule, verdict.value)
            by = DecidedBy(frame.table, frame.chain, rule.number, rule.text)
            return _Outcome(verdict, by, tuple(br.trace), tuple(br.assumed), origin=frame.rs)
        if k is TargetKind.RETURN:
            self._step(br, frame, rule, "return")
            return self._leave(br, explicit=True)
        if k is TargetKind.JUMP or k is TargetKind.GOTO:
            verb = "jump" if k is TargetKind.JUMP else "goto"
            self._step(br, frame, rule, f"{verb} {t.name}")
            if k is TargetKind.GOTO:
                br.stack.pop()
            if len(br.stack) >= self.limits.depth:
                raise WalkAborted(f"jumps nested deeper than {self.limits.depth} (a loop?)")
            entries = frame.rs.chain_entries(frame.table, t.name)
            br.stack.append(_Frame(frame.rs, frame.table, t.name, entries))
            return None
        if k is TargetKind.EFFECT and t.effect is not None:
            t.effect(br.ctx)
            self._step(br, frame, rule, f"{t.name} (mark now {hex_mark(br.ctx.mark)})")
            return None
        if k is TargetKind.CONTINUE:
            self._step(br, frame, rule, f"{t.name}, continue")
            return None
        if k is TargetKind.NONE:
            return None
        if t.unseen and frame.table in _BOUNDED_TABLES:
            return self._unseen_chain(br, frame, rule)
        self._step(br, frame, rule, "unknown")
        by = DecidedBy(frame.table, frame.chain, rule.number, rule.text)
        return _Outcome(
            PacketVerdict.UNKNOWN, by, tuple(br.trace), tuple(br.assumed), t.note, origin=frame.rs
        )

    def _unseen_chain(self, br: _Branch, frame: _Frame, rule: Rule) -> _Outcome | None:
        """A jump (or goto) to a chain the capture does not show, in the filter table.

        Whatever that chain holds, the packet leaves it in one of four ways: accepted (the
        hook ends), dropped, rejected, or back after the jump (RETURN or its end), with its
        marks possibly changed (MARK/CONNMARK are allowed there; nothing in filter rewrites
        addresses or ports). One path per way, marks unknown after it: the verdict stands
        only if every way leads to the same one (e.g. a later hook blocks everything, or the
        jump is never reached). In raw, mangle and nat the chain could also untrack, rewrite
        or redirect the packet: there the jump stays unknown."""
        t = rule.target
        goto = t.note.startswith("-g ")  # compile.py's note for a goto to an absent chain
        verb = "goto" if goto else "jump"
        why = (
            f"{verb} to {t.name}, which the capture does not show (a chain left out, or a "
            "target we do not know): it may accept, drop, reject or return"
        )
        u = IptablesUndecided(frame.table, frame.chain, rule.number, rule.text, why)
        by = DecidedBy(frame.table, frame.chain, rule.number, rule.text)
        self._step(br, frame, rule, f"{verb} {t.name}: not in the capture")
        for verdict in (PacketVerdict.DROP, PacketVerdict.REJECT):
            assumed = (*br.assumed, (u, f"{t.name} {verdict.value}s"))
            self.finished.append(_Outcome(verdict, by, tuple(br.trace), assumed, origin=frame.rs))
        br.ctx.mark = br.ctx.ctmark = None
        accepted = br.fork()
        accepted.assumed.append((u, f"{t.name} accepts"))
        self._end_hook(accepted, by, frame.rs)
        self.work.append(accepted)
        br.assumed.append((u, f"{t.name} returns"))
        if goto:  # a RETURN in the goto's target returns from the chain that went there
            return self._leave(br, explicit=True)
        return None

    def _leave(self, br: _Branch, *, explicit: bool) -> _Outcome | None:
        """Return from the current chain; from the built-in chain this is its policy."""
        br.stack.pop()
        if br.stack:
            return None
        rs, table, chain = self.hooks[br.hook]
        policy = rs.tables[table].chains[chain].policy or "ACCEPT"
        by = DecidedBy(table, chain, policy=policy)
        source = rs.source if self.multi else ""
        br.trace.append(TraceStep(table, chain, None, None, f"policy {policy}", source))
        if policy == "DROP":
            return _Outcome(PacketVerdict.DROP, by, tuple(br.trace), tuple(br.assumed), origin=rs)
        self._end_hook(br, by, rs)
        return None

    def _end_hook(self, br: _Branch, by: DecidedBy, rs: IptablesRuleset) -> None:
        br.stack.clear()
        br.hook += 1
        if br.accepted_by is None or br.accepted_by.table != "filter":
            br.accepted_by = by  # the filter table's accept is the one users look for
            br.accepted_rs = rs


def _cause(rs: IptablesRuleset, by: DecidedBy | None) -> int | None:
    if by is None:
        return None
    if by.chain.startswith(("ufw-", "ufw6-")):
        return 2
    if by.policy is not None and by.table == "filter" and by.chain == "INPUT" and rs.has_ufw():
        return 2  # ufw sets the INPUT policy (DEFAULT_INPUT_POLICY)
    return 3


def evaluate_ruleset(
    rs: IptablesRuleset, packet: Packet, limits: Limits | None = None, *, handshake: bool = True
) -> IptablesVerdict:
    """The verdict of one ruleset alone for the packet."""
    return _evaluate([rs], packet, limits, handshake=handshake)


def _evaluate(
    rulesets: Sequence[IptablesRuleset],
    packet: Packet,
    limits: Limits | None = None,
    *,
    handshake: bool = True,
) -> IptablesVerdict:
    """The first packet's verdict; for an accepted TCP SYN also the next packets' verdict."""
    first = _walk_all(rulesets, packet, limits, established=False)
    if not handshake:
        return first
    return with_next_packets(
        first, packet, lambda: _walk_all(rulesets, packet, limits, established=True)
    )


def _walk_all(
    rulesets: Sequence[IptablesRuleset], packet: Packet, limits: Limits | None, *, established: bool
) -> IptablesVerdict:
    lim = limits or Limits()
    walker = _Walker(rulesets, lim)
    ctx = _ctx(packet)
    ctx.established = established
    if established:
        ctx.ctmark = None  # whatever CONNMARK saved on the first packet is not tracked
    walker.work.append(_Branch(ctx))
    outcomes: list[_Outcome] = []
    try:
        drain(walker.work, walker.run, lim, outcomes, walker.finished)
    except WalkAborted as exc:
        undecided = _undecided(outcomes, walker.work)
        return IptablesVerdict(
            PacketVerdict.UNKNOWN,
            rulesets[0].source,
            undecided=undecided,
            reason=f"evaluation stopped: {exc}",
            command=rulesets[0].command(),
            notes=_caveats(rulesets),
            packet=packet,
        )
    return replace(_combine(rulesets, outcomes), packet=packet)


def _caveats(rulesets: Sequence[IptablesRuleset]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(c for rs in rulesets for c in rs.caveats))


def _undecided(
    outcomes: Sequence[_Outcome], pending: Sequence[_Branch] = ()
) -> tuple[IptablesUndecided, ...]:
    assumed = [o.assumed for o in outcomes] + [tuple(b.assumed) for b in pending]
    return undecided_of(assumed, lambda u: (u.table, u.chain, u.rule_number))


def _assumptions(o: _Outcome) -> str:
    if not o.assumed:
        return "no undecided rule"
    return ", ".join(f"{u.table} {u.chain} #{u.rule_number} {_hit(hit)}" for u, hit in o.assumed)


def _hit(hit: Assumption) -> str:
    if isinstance(hit, str):
        return hit
    return "matches" if hit else "does not match"


def _combine(rulesets: Sequence[IptablesRuleset], outcomes: list[_Outcome]) -> IptablesVerdict:
    first = outcomes[0]
    rs = first.origin or rulesets[0]
    undecided = _undecided(outcomes)
    verdicts = {o.verdict for o in outcomes}
    notes = list(_caveats(rulesets))
    if agreed(outcomes):
        if undecided:
            notes.append(same_on_every_path(undecided))
        others = other_blocks(outcomes)
        if others:
            notes.append("blocked on every path, but which rule blocks depends on undecided rules")
        kinds = [v for v in (PacketVerdict.DROP, PacketVerdict.REJECT) if v in verdicts]
        blocked_as = ""
        if len(kinds) > 1:
            blocked_as = f"DROP or REJECT, depending on {_names(undecided)}"
        return IptablesVerdict(
            first.verdict,
            rs.source,
            cause=_cause(rs, first.decided_by) if first.verdict.blocks else None,
            decided_by=first.decided_by,
            trace=first.trace,
            undecided=undecided,
            notes=tuple(notes),
            command=rs.command(),
            other_blocks=tuple(others),
            blocked_as=blocked_as,
        )
    if len(outcomes) == 1:
        reason = first.reason
    else:
        paths = path_summary(outcomes, _assumptions)
        reason = f"the outcome depends on rules that cannot be decided: {paths}"
        hidden = _hidden_reading(outcomes, rs)
        if hidden:
            notes.insert(0, reason)
            reason = hidden
    unknown = next((o for o in outcomes if o.verdict is PacketVerdict.UNKNOWN), first)
    rs = unknown.origin or rs
    return IptablesVerdict(
        PacketVerdict.UNKNOWN,
        rs.source,
        decided_by=unknown.decided_by if len(outcomes) == 1 else None,
        trace=unknown.trace,
        undecided=undecided,
        reason=reason,
        notes=tuple(notes),
        command=rs.command(),
    )


def _names(undecided: Sequence[IptablesUndecided]) -> str:
    names = [f"{u.table} {u.chain} #{u.rule_number}" for u in undecided[:4]]
    more = f" and {len(undecided) - 4} more" if len(undecided) > 4 else ""
    return ", ".join(names) + more if names else "undecided rules"


def _hidden_reading(outcomes: Sequence[_Outcome], rs: IptablesRuleset) -> str:
    """For a listing without -v that leaves the verdict open: which rules' hidden interfaces
    decide it, the likely reading (a bare ACCEPT is the loopback rule, the other rules have
    no interface) and the capture that would decide. "" when no hidden interface is involved.
    """
    hidden = {
        (u.table, u.chain, u.rule_number): u
        for o in outcomes
        for u, _ in o.assumed
        if HIDDEN in u.reason
    }
    if not hidden:
        return ""
    rules = list(hidden.values())
    text = (
        "the listing hides interfaces (iptables -L without -v); the interfaces of "
        f"{_names(rules)} decide it"
    )

    def likely(hit: Assumption, u: IptablesUndecided) -> bool:
        return hit is (u.reason == HIDDEN_IFACE)

    reading = next(
        (
            o
            for o in outcomes
            if o.verdict is not PacketVerdict.UNKNOWN
            and o.assumed
            and all(u.reason in (HIDDEN_IFACE, HIDDEN_LO) and likely(h, u) for u, h in o.assumed)
        ),
        None,
    )
    if reading is not None:
        lo = [f"{u.table} {u.chain} #{u.rule_number}" for u in rules if u.reason == HIDDEN_LO]
        by = reading.decided_by
        where = (
            ""
            if by is None
            else f" (policy {by.policy} of {by.table} {by.chain})"
            if by.policy
            else f" ({by.table} {by.chain} rule {by.rule_number})"
        )
        assume = (
            f"{', '.join(lo)} {'is' if len(lo) == 1 else 'are'} the loopback rule "
            "`-i lo -j ACCEPT` (a bare ACCEPT early in INPUT usually is) and no other rule has "
            "an interface"
            if lo
            else "no rule has an interface"
        )
        text += f"; likely {reading.verdict.value.upper()}{where}, if {assume}"
    chains = {(u.table, u.chain) for u in rules}
    table, chain = next(iter(chains))
    words = [*(["-t", table] if table != "filter" else []), "-L"]
    words += [chain] if len(chains) == 1 else []
    listing = command(rs.command(), *words, "-n", "-v", "--line-numbers")
    save = command(f"{rs.command()}-save") if table != "filter" else command(rs.command(), "-S")
    return f"{text}; to decide, capture `{listing}` or `{save}`"


def evaluate_input(
    rulesets: Sequence[IptablesRuleset],
    packet: Packet,
    limits: Limits | None = None,
    *,
    handshake: bool = True,
) -> IptablesVerdict:
    """The verdict for a packet that must pass every ruleset (e.g. legacy and nft at once).

    The rulesets are walked together, hook by hook in the given order, sharing the packet's
    marks (a legacy mangle MARK is seen by an nft filter rule, as in the kernel). Which of
    two rulesets runs first at one hook is the kernel's registration order: pass them in
    that order when it matters (a DROP in one and a REJECT in the other).

    With `handshake` (the default) an accepted TCP SYN is followed by the connection's next
    packets (ESTABLISHED, ACK): a ruleset that lets the SYN in but drops those breaks the
    connection too, and that is the verdict. handshake=False judges the first packet only.

    Rulesets of the other address family do not apply and are listed as such; when none
    applies, that is an InputError (an ip6tables dump cannot say anything about IPv4).
    """
    if not rulesets:
        raise ValueError("no ruleset given")
    applicable = [rs for rs in rulesets if rs.family in (None, packet.family)]
    # By family, not `rs not in applicable`: that compared whole rulesets, pair by pair.
    skipped = tuple(rs.source for rs in rulesets if rs.family not in (None, packet.family))
    if not applicable:
        rs = rulesets[0]
        kind = "ip6tables (IPv6)" if rs.family == 6 else "iptables (IPv4)"
        raise InputError(
            rs.source,
            f"is an {kind} dump but the packet is IPv{packet.family}: it does not apply",
        )
    joint = _evaluate(applicable, packet, limits, handshake=handshake)
    if len(applicable) == 1 and not skipped:
        return joint
    # Each ruleset alone too: which of them would block by itself.
    alone = (
        [evaluate_ruleset(rs, packet, limits, handshake=handshake) for rs in applicable]
        if len(applicable) > 1
        else []
    )
    return replace(joint, rulesets=tuple(alone), not_applicable=skipped)
