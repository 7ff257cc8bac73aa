"""Walking a TCP connection's packets through the native nftables base chains of the input path.

The path of a packet to a local socket (nft(8) "ADDRESS FAMILIES", "CHAINS"; the kernel's
nf_hook_slow and nft_do_chain): the base chains on hook ingress (netdev/inet), then prerouting,
then input, of every table of the packet's family (ip or inet for IPv4, ip6 or inet for IPv6),
each hook's chains in ascending priority. Per chain:

- `accept` ends this base chain only: the packet goes on to the next base chain of the hook,
  then to the next hook. `drop` and `reject` end everything.
- `jump` pushes, `goto` replaces the current chain, `return` (or the end of a regular chain)
  goes back to the caller; `return` or the end of a base chain applies its policy.
- nat chains are called by the conntrack NAT core, at its fixed priority (-100 in prerouting,
  100 in input), for the first packet of a connection only.
- conntrack runs at -200 in prerouting: before it (ingress, prerouting below -200) there is
  no conntrack entry, so `ct state` reads "invalid" and `ct mark` ends the rule.

A match that cannot be decided forks the walk (matches / does not match); the verdict stands
only if every path agrees. Paths, steps and jump depth are bounded: a pathological input ends
as "unknown", never as a hang. See docs/nftables.md for the sources.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from shared.analysis.nftables.match import Ctx, decide, lookup
from shared.analysis.nftables.model import (
    Cond,
    Effect,
    Match,
    NftChain,
    NftDecidedBy,
    NftRule,
    NftRuleset,
    NftTable,
    NftTraceStep,
    NftUndecided,
    NftVerdict,
    NoOp,
    Unknown,
    VerdictStmt,
    VKind,
    Vmap,
)
from shared.analysis.nftables.values import CT_STATES, TCP_FLAGS
from shared.analysis.walk import (
    Assumption,
    Limits,
    Outcome,
    Packet,
    PacketVerdict,
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

__all__ = ["Limits", "evaluate_input"]

_HOOKS = {"ingress": 0, "prerouting": 1, "input": 2}
_NAT_PRIO = {"prerouting": -100, "input": 100}  # NF_IP_PRI_NAT_DST / NF_IP_PRI_NAT_SRC
_CONNTRACK = -200  # NF_IP_PRI_CONNTRACK


# Statements, not rules, are counted here; the kernel allows 16 nested jumps
# (NFT_JUMP_STACK_SIZE), the depth limit stays above that.
_LIMITS = Limits(steps=500_000)


@dataclass(frozen=True, slots=True)
class _Base:
    table: NftTable
    chain: NftChain
    hook: str
    prio: int  # where it runs among the hook's chains

    def label(self) -> str:
        c = self.chain
        return f"{c.family} {c.table} {c.name} (hook {self.hook}, {c.type}, priority {c.prio})"


@dataclass(slots=True)
class _Frame:
    table: NftTable
    chain: NftChain
    rule: int = 0
    stmt: int = 0
    via: tuple[str, str] | None = None  # (map, element) of a named verdict map that led here


class _Outcome(Outcome[NftDecidedBy, NftTraceStep, NftUndecided, None]):
    """A path's end."""

    __slots__ = ()


@dataclass(slots=True)
class _Branch:
    ctx: Ctx
    ct: int  # the packet's real conntrack state once conntrack ran
    hook: int = 0
    stack: list[_Frame] = field(default_factory=list)
    trace: list[NftTraceStep] = field(default_factory=list)
    assumed: list[tuple[NftUndecided, Assumption]] = field(default_factory=list)
    accepted_by: NftDecidedBy | None = None
    # A verdict map outcome this branch was forked to take (applied when it resumes).
    pending: tuple[VerdictStmt | None, str] | None = None

    def fork(self) -> _Branch:
        return _Branch(
            self.ctx.copy(),
            self.ct,
            self.hook,
            [_Frame(f.table, f.chain, f.rule, f.stmt, f.via) for f in self.stack],
            list(self.trace),
            list(self.assumed),
            self.accepted_by,
        )


def _by(rule: NftRule) -> NftDecidedBy:
    return NftDecidedBy(rule.family, rule.table, rule.chain, rule.handle, rule.text)


def _effective(rule: NftRule, start: int) -> bool:
    """Whether the statements from `start` on can change anything (else a match is moot)."""
    return any(not isinstance(s, (Match, Cond, NoOp)) for s in rule.stmts[start:])


class _Walker:
    def __init__(self, bases: list[_Base], limits: Limits, packet: str, ct_on: bool) -> None:
        self.bases = bases
        self.ct_on = ct_on  # a rule in the capture makes the kernel run conntrack
        self.limits = limits
        self.packet = packet  # "syn" or "ack"
        self.work: list[_Branch] = []
        self.steps = 0

    def step(self, br: _Branch, f: _Frame, rule: NftRule | None, action: str) -> None:
        c = f.chain
        br.trace.append(
            NftTraceStep(
                c.family,
                c.table,
                c.name,
                None if rule is None else rule.handle,
                None if rule is None else rule.text,
                action,
                self.packet,
            )
        )

    def run(self, br: _Branch) -> _Outcome:
        if br.pending is not None:
            f = br.stack[-1]
            rule = f.chain.rules[f.rule]
            vm = rule.stmts[f.stmt - 1]
            verdict, elem = br.pending
            br.pending = None
            if isinstance(vm, Vmap):  # always: only a verdict map forks with a pending verdict
                out = self.vmap_result(br, f, rule, vm, verdict, elem)
                if out is not None:
                    return out
        while True:
            if not br.stack:
                if br.hook >= len(self.bases):
                    return self.done(br, PacketVerdict.ACCEPT, br.accepted_by)
                if not self.enter(br, self.bases[br.hook]):
                    br.hook += 1
                continue
            f = br.stack[-1]
            if f.rule >= len(f.chain.rules):
                out = self.leave(br, None)
                if out is not None:
                    return out
                continue
            rule = f.chain.rules[f.rule]
            if f.stmt >= len(rule.stmts):
                f.rule, f.stmt = f.rule + 1, 0
                continue
            stmt = rule.stmts[f.stmt]
            f.stmt += 1
            self.steps += 1
            if self.steps > self.limits.steps:
                raise WalkAborted(f"more than {self.limits.steps} statements evaluated")
            out = self.exec(br, f, rule, stmt)
            if out is not None:
                return out

    def enter(self, br: _Branch, base: _Base) -> bool:
        """Pushes a base chain; False when this packet does not pass through it."""
        c = base.chain
        ctx = br.ctx
        if c.type == "nat" and (ctx.untracked or br.ct != CT_STATES["new"]):
            why = "untracked" if ctx.untracked else "not the first packet of the connection"
            self.step(br, _Frame(base.table, c), None, f"skip nat chain: {why}")
            return False
        if c.type == "nat" and not self.ct_on:
            # nat chains run only for packets conntrack tracks, and the kernel runs conntrack
            # only once some rule needs it. Nothing in this capture does; other software
            # (kube-proxy, iptables rules) usually does, but that cannot be seen here.
            u = NftUndecided(
                c.family,
                c.table,
                c.name,
                None,
                "type nat",
                "whether conntrack runs: no rule in the capture needs it",
            )
            self.maybe(br, u, "conntrack runs", "conntrack does not run (nat chains not called)")
        before_ct = base.hook == "ingress" or (base.hook == "prerouting" and base.prio < _CONNTRACK)
        ctx.conntrack = not before_ct
        # At exactly conntrack's priority the order is the kernel's registration order.
        ctx.ct = None if base.hook == "prerouting" and base.prio == _CONNTRACK else br.ct
        if c.device is not None and ctx.iif != c.device:
            if ctx.iif is not None:
                return False  # an ingress chain of another device
            why = "the input interface is not known"
            u = NftUndecided(c.family, c.table, c.name, None, f"device {c.device}", why)
            self.maybe(br, u, f"the packet arrives on {c.device}", "it arrives elsewhere")
        br.stack.append(_Frame(base.table, c))
        return True

    def maybe(self, br: _Branch, u: NftUndecided, enters: str, skips: str) -> None:
        """Forks at a base chain the packet may or may not pass: the fork skips it."""
        other = split(br, self.work, u, taken=skips, untaken=enters)
        other.hook += 1

    def exec(self, br: _Branch, f: _Frame, rule: NftRule, stmt: object) -> _Outcome | None:
        ctx = br.ctx
        if isinstance(stmt, (Match, Cond)):
            if isinstance(stmt, Match):
                hit, why = decide(stmt, ctx, f.table.sets)
            else:
                hit, why = None, stmt.why
            if hit is True:
                return None
            if hit is None and _effective(rule, f.stmt):
                u = self.undecided(f, rule, why)
                # the copy resumes after this match
                split(br, self.work, u, taken="matches", untaken="does not match")
            f.rule, f.stmt = f.rule + 1, 0
            return None
        if isinstance(stmt, NoOp):
            return None
        if isinstance(stmt, Effect):
            self.effect(br, stmt)
            self.step(br, f, rule, f"{stmt.target} set (mark now {hex_mark(ctx.mark)})")
            return None
        if isinstance(stmt, VerdictStmt):
            return self.verdict(br, f, rule, stmt, None)
        if isinstance(stmt, Vmap):
            options, why = lookup(stmt, ctx, f.table.sets)
            if not options:
                return self.unknown(br, f, rule, f"verdict map: {why}")
            verdict, elem = options[0]
            if len(options) > 1:
                u = self.undecided(f, rule, why)
                for other_verdict, other_elem in options[1:]:
                    other = br.fork()
                    other.assumed.append(
                        (u, f"element {other_elem}" if other_elem else "no element")
                    )
                    other.pending = (other_verdict, other_elem)
                    self.work.append(other)
                br.assumed.append((u, f"element {elem}" if elem else "no element"))
            return self.vmap_result(br, f, rule, stmt, verdict, elem)
        if isinstance(stmt, Unknown):
            return self.unknown(br, f, rule, stmt.why)
        return self.unknown(br, f, rule, f"statement {stmt!r}")  # pragma: no cover

    def undecided(self, f: _Frame, rule: NftRule, why: str) -> NftUndecided:
        c = f.chain
        return NftUndecided(c.family, c.table, c.name, rule.handle, rule.text, why)

    def vmap_result(
        self,
        br: _Branch,
        f: _Frame,
        rule: NftRule,
        stmt: Vmap,
        verdict: VerdictStmt | None,
        elem: str,
    ) -> _Outcome | None:
        if verdict is None:
            f.rule, f.stmt = f.rule + 1, 0
            return None
        return self.verdict(br, f, rule, verdict, (elem, stmt.map_name or None))

    def verdict(
        self,
        br: _Branch,
        f: _Frame,
        rule: NftRule,
        v: VerdictStmt,
        elem: tuple[str, str | None] | None,
    ) -> _Outcome | None:
        by = _by(rule)
        if elem is not None:
            by = replace(by, element=elem[0], map_name=elem[1])
        via = f" (element {elem[0]})" if elem else ""
        k = v.kind
        if k in (VKind.ACCEPT, VKind.NAT):
            self.step(br, f, rule, ("accept" if k is VKind.ACCEPT else f"{v.detail}: accept") + via)
            if br.accepted_by is None or self.bases[br.hook].hook == "input":
                br.accepted_by = by
            br.stack.clear()
            br.hook += 1
            return None
        if k in (VKind.DROP, VKind.REJECT):
            self.step(br, f, rule, k.value + via)
            verdict = PacketVerdict.DROP if k is VKind.DROP else PacketVerdict.REJECT
            if elem is None:
                # Reached through a named verdict map's element (kube-proxy's reject-chain):
                # that element, not the shared rule, is what sends this packet here.
                entry = next((fr.via for fr in reversed(br.stack) if fr.via), None)
                if entry is not None:
                    by = replace(by, element=entry[1], map_name=entry[0])
            return self.done(br, verdict, by)
        if k is VKind.CONTINUE:
            f.rule, f.stmt = f.rule + 1, 0
            return None
        if k is VKind.RETURN:
            self.step(br, f, rule, "return" + via)
            return self.leave(br, rule)
        if k in (VKind.JUMP, VKind.GOTO):
            self.step(br, f, rule, f"{k.value} {v.target}{via}")
            f.rule, f.stmt = f.rule + 1, 0
            entry = (elem[1], elem[0]) if elem is not None and elem[1] else None
            if k is VKind.GOTO:
                br.stack.pop()
                entry = entry or f.via
            if len(br.stack) >= self.limits.depth:
                raise WalkAborted(f"jumps nested deeper than {self.limits.depth}")
            br.stack.append(_Frame(f.table, f.table.chains[v.target], via=entry))
            return None
        why = (
            "a user-space program (queue) decides"
            if k is VKind.QUEUE
            else f"{v.detail} may send the packet elsewhere"
        )
        return self.unknown(br, f, rule, why)

    def unknown(self, br: _Branch, f: _Frame, rule: NftRule, why: str) -> _Outcome:
        self.step(br, f, rule, f"unknown: {why}")
        return _Outcome(PacketVerdict.UNKNOWN, _by(rule), tuple(br.trace), tuple(br.assumed), why)

    def leave(self, br: _Branch, rule: NftRule | None) -> _Outcome | None:
        """Leaves the current chain; leaving the base chain applies its policy."""
        br.stack.pop()
        if br.stack:
            return None
        base = self.bases[br.hook]
        c = base.chain
        policy = c.policy or "accept"
        self.step(br, _Frame(base.table, c), None, f"policy {policy}")
        by = NftDecidedBy(c.family, c.table, c.name, policy=policy)
        if policy == "drop":
            return self.done(br, PacketVerdict.DROP, by)
        if br.accepted_by is None or base.hook == "input":
            br.accepted_by = by
        br.hook += 1
        return None

    def effect(self, br: _Branch, e: Effect) -> None:
        ctx = br.ctx
        if e.target == "notrack":
            if not ctx.conntrack:
                ctx.untracked = True
            return
        if e.target == "ct.mark" and (not ctx.conntrack or ctx.untracked):
            return  # no conntrack entry to mark
        old = ctx.mark if e.target == "meta.mark" else ctx.ctmark
        new: int | None
        if e.value is None or (e.op != "=" and old is None):
            new = None
        elif e.op == "=" or old is None:
            new = e.value
        else:
            new = {"|": old | e.value, "&": old & e.value, "^": old ^ e.value}[e.op]
        if e.target == "meta.mark":
            ctx.mark = new
        else:
            ctx.ctmark = new

    def done(self, br: _Branch, verdict: PacketVerdict, by: NftDecidedBy | None) -> _Outcome:
        return _Outcome(verdict, by, tuple(br.trace), tuple(br.assumed))


def _bases(rs: NftRuleset, family: int) -> tuple[list[_Base], list[str], list[str]]:
    """The base chains a packet of this family meets, in order; skipped tables; notes."""
    fams = {"inet", "netdev", "ip" if family == 4 else "ip6"}
    found: list[tuple[tuple[int, int, int, int], _Base]] = []
    skipped: list[str] = []
    notes: list[str] = []
    for t in rs.tables:
        if t.compat:
            skipped.append(f"{t.family} {t.name}: {t.compat}")
            continue
        if t.family not in fams:
            continue
        for c in t.chains.values():
            if c.hook not in _HOOKS or c.prio is None:
                continue
            prio = _NAT_PRIO.get(c.hook, c.prio) if c.type == "nat" else c.prio
            found.append(((_HOOKS[c.hook], prio, c.prio, len(found)), _Base(t, c, c.hook, prio)))
    found.sort(key=lambda x: x[0])
    bases = [b for _, b in found]
    for a, b in itertools.pairwise(bases):
        if a.hook == b.hook and a.prio == b.prio and a.chain.type == b.chain.type:
            notes.append(
                f"{a.label()} and {b.label()} share a priority: the kernel runs them in the "
                "order they were registered, assumed here to be the order listed"
            )
    return bases, skipped, notes


def _ctx(packet: Packet, ack: bool) -> Ctx:
    return Ctx(
        packet.family,
        int(packet.src),
        None if packet.dst is None else int(packet.dst),
        packet.proto_number() or 0,
        packet.dport,
        packet.sport,
        packet.in_iface,
        TCP_FLAGS["ack"] if ack else TCP_FLAGS["syn"],
        None,
    )


def _walk(
    bases: list[_Base], packet: Packet, limits: Limits, ack: bool, ct_on: bool
) -> list[_Outcome]:
    walker = _Walker(bases, limits, "ack" if ack else "syn", ct_on)
    ct = CT_STATES["established"] if ack else CT_STATES["new"]
    walker.work.append(_Branch(_ctx(packet, ack), ct))
    outcomes: list[_Outcome] = []
    drain(walker.work, walker.run, limits, outcomes)
    return outcomes


def _undecided(outcomes: Sequence[_Outcome]) -> tuple[NftUndecided, ...]:
    return undecided_of(
        (o.assumed for o in outcomes), lambda u: (u.family, u.table, u.chain, u.handle, u.rule)
    )


def _combine(source: str, outcomes: list[_Outcome]) -> NftVerdict:
    first = outcomes[0]
    undecided = _undecided(outcomes)
    notes: list[str] = []
    if agreed(outcomes):
        if undecided:
            notes.append(same_on_every_path(undecided))
        others = other_blocks(outcomes)
        return NftVerdict(
            first.verdict,
            source,
            first.decided_by,
            first.trace,
            undecided,
            notes=tuple(notes),
            other_blocks=tuple(others),
        )
    if len(outcomes) == 1:
        reason = first.reason
    else:
        paths = path_summary(
            outcomes,
            lambda o: (
                ", ".join(f"handle {u.handle} of {u.chain}: {how}" for u, how in o.assumed) or "-"
            ),
        )
        why = "; ".join(f"handle {u.handle} of {u.chain}: {u.reason}" for u in undecided[:4])
        reason = f"the outcome depends on what cannot be decided ({why}): {paths}"
    unknown = next((o for o in outcomes if o.verdict is PacketVerdict.UNKNOWN), first)
    return NftVerdict(
        PacketVerdict.UNKNOWN,
        source,
        unknown.decided_by if len(outcomes) == 1 else None,
        unknown.trace,
        undecided,
        reason,
    )


def evaluate_input(
    ruleset: NftRuleset,
    packet: Packet,
    limits: Limits | None = None,
    *,
    handshake: bool = True,
) -> NftVerdict:
    """What the native nftables tables do to the packet on its way to a local socket.

    With `handshake` (the default) an accepted TCP SYN is followed by the handshake's ACK
    (ct state established, no nat chains): rules that let the SYN in but stop the ACK break
    the connection too, and that is the verdict. iptables-nft's own tables are skipped and
    listed in `skipped`: the iptables engine reads them from iptables-save.
    """
    lim = limits or _LIMITS
    bases, skipped, notes = _bases(ruleset, packet.family)
    evaluated = tuple(b.label() for b in bases)
    fams = {"inet", "netdev", "ip" if packet.family == 4 else "ip6"}
    ct_on = any(t.conntrack and t.family in fams for t in ruleset.tables)
    if not bases:
        note = "no native nftables base chain on hook ingress, prerouting or input for IPv"
        return NftVerdict(
            PacketVerdict.ACCEPT,
            ruleset.source,
            notes=(f"{note}{packet.family}: nothing here filters the packet",),
            skipped=tuple(skipped),
            packet=packet,
        )
    try:
        first = _combine(ruleset.source, _walk(bases, packet, lim, False, ct_on))
        if handshake:
            first = with_next_packets(
                first,
                packet,
                lambda: _combine(ruleset.source, _walk(bases, packet, lim, True, ct_on)),
            )
    except WalkAborted as exc:
        first = NftVerdict(
            PacketVerdict.UNKNOWN, ruleset.source, reason=f"evaluation stopped: {exc}"
        )
    return replace(
        first,
        notes=(*first.notes, *notes),
        skipped=tuple(skipped),
        evaluated=evaluated,
        packet=packet,
    )
