"""The paste pre-pass: remove what is clearly not tool output from a pasted capture.

People paste what their terminal showed, not what the tool printed: the prompt and command
line (`root@node:~# iptables -nvL`, `[root@x ~]# ...`, `$ sudo ufw status verbose`,
`PS C:\\> ...`), sudo's password prompt, ufw's replies to other commands (`Firewall is active
and enabled on system startup`), console timestamps (`[   14.414142] `) before each line,
markdown (code fences, `###` headers, `> ` blockquotes on every line), CRLF line endings and
the next prompt after the output. `clean(text)` takes those away and says what it took:

    paste = clean(text)
    paste.text        # what the format parser reads; the SAME line numbers as `text`
    paste.notes()     # ["skipped line 1: the shell prompt and command `iptables -nvL`", ...]
    paste.commands    # the command lines found (Command), first one = paste.command
    paste.command.table / .chain / .family / .listing / .flags / .ufw_args / .nc_targets

Line numbers: a skipped line becomes an empty line and a stripped prefix is removed from its
line, so line N of `paste.text` is line N of the input and a parser's "line N" error needs no
mapping. Skipped lines after the last line kept are dropped (no line number moves).

What is never touched: a line that could be output of the tools we read. Output lines never
start with a prompt followed by a known command (`iptables-save` comments are `# Generated
by ...`, `# Completed on ...`, `# Warning: ...`); ufw's numbered rules start with `[ 1]`
(no `@`, no decimal point, so neither a `[user@host ~]#` prompt nor a console timestamp);
nc's `Connection to ...` and `nc: connect to ...` lines start with no prompt. A single `# ...`
line is a prompt only when a known command follows `# `; `$ `, `> ` and `% ` likewise.

Pure and linear: every line is looked at a bounded number of times, only its first
_HEAD_CHARS characters by the prompt patterns (anchored, no nested quantifiers).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

__all__ = ["Command", "Paste", "Skipped", "clean"]

_HEAD_CHARS = 512  # a prompt is looked for in this much of a line
_COMMAND_CHARS = 4096  # a command line is parsed for hints up to this length

# The programs whose command lines we recognise after a bare `$ `, `# `, `> ` or `% ` prompt
# or alone on a line. After an unmistakable prompt (`user@host:~$`) any command is one.
_PROGRAMS = frozenset(
    {
        "iptables", "ip6tables", "iptables-save", "ip6tables-save",
        "iptables-legacy", "ip6tables-legacy", "iptables-legacy-save", "ip6tables-legacy-save",
        "iptables-nft", "ip6tables-nft", "iptables-nft-save", "ip6tables-nft-save",
        "nft", "ufw", "nc", "ncat", "netcat", "nc.openbsd", "nc.traditional", "busybox",
        "az", "kubectl", "echo", "cat", "curl", "telnet", "timeout", "bash", "sh", "sudo",
        "doas", "ss", "ip", "jq", "head", "tail", "grep", "less", "more", "clear", "exit",
        "Invoke-AzVMRunCommand", "Invoke-AzVmssVMRunCommand", "watch", "time", "env",
    }
)  # fmt: skip
# Words before the program that do not change what it prints: `sudo -E env LANG=C iptables ...`
_WRAPPERS = frozenset({"sudo", "doas", "env", "time", "command", "exec", "nohup", "watch"})
_WRAPPER_ARG_OPTS = frozenset({"-u", "-g", "-n", "-d", "-s", "-k", "-w", "-U", "-C"})

# [user@host dir]# cmd   [user@host dir]$ cmd
_BRACKET = re.compile(r"\[[^\]\s@]{1,64}@[^\]]{1,200}\][#$%](?: |$)")
# user@host:~/dir$ cmd   user@host:~# cmd   user@host dir % cmd (zsh)
_AT_HOST = re.compile(r"[\w.\-]{1,64}@[\w.\-]{1,200}(?:[: ][^\s#$%]{0,200})? ?[#$%](?: |$)")
# bash-5.1# cmd   sh-4.2$ cmd
_SHELL = re.compile(r"(?:ba|z|da|k|)sh(?:-[\d.]{1,16})?[#$%](?: |$)")
# PS C:\Users\me> cmd
_POWERSHELL = re.compile(r"PS [A-Za-z]:\\[^>]{0,200}> ?")
# host:~ # cmd (SUSE)   / # cmd (busybox)   ~ $ cmd: only with a known command after it
_PATHLIKE = re.compile(r"(?:[\w.\-]{1,64}:)?[~/][^\s#$]{0,200} [#$] ")
# $ cmd   # cmd   > cmd   % cmd: only with a known command after it
_BARE = re.compile(r"[$#>%] ?")
_CONSOLE = re.compile(r"\[ {0,12}\d{1,10}\.\d{1,9}\] ?")  # [   14.414142]
_FENCE = re.compile(r" {0,3}(?:```|~~~)")
_HEADER = re.compile(r"#{2,6}(?: |$)")
# ufw's replies to commands other than `ufw status`, pasted with the status
_UFW_REPLIES = (
    "Command may disrupt existing ssh connections",
    "Firewall is active and enabled on system startup",
    "Firewall stopped and disabled on system startup",
    "Firewall not enabled (skipping reload)",
    "Firewall reloaded",
    "Rules updated",
    "Rule added",
    "Rule deleted",
    "Rule updated",
    "Rule inserted",
    "Skipping adding existing rule",
    "Skipping inserting existing rule",
    "Default incoming policy changed to",
    "Default outgoing policy changed to",
    "(be sure to update your rules accordingly)",
    "Logging enabled",
    "Logging disabled",
)


@dataclass(frozen=True, slots=True)
class Command:
    """A command line found in the paste (after its prompt, or alone on a line).

    `words` are the shell words of its first pipeline stage, with `sudo`, `env`, `LANG=C`
    and `timeout N` taken off; `program` is words[0] without its directory ("" if none);
    `piped` the programs of the later stages, after `|`, `;`, `&&` or `||` (`| head`,
    `| grep`: the output may be partial)."""

    line: int  # 1-based line number in the original paste
    text: str  # the command as typed (after the prompt)
    words: tuple[str, ...]
    piped: tuple[str, ...]

    @property
    def program(self) -> str:
        return self.words[0].rsplit("/", 1)[-1] if self.words else ""

    @property
    def args(self) -> tuple[str, ...]:
        return self.words[1:]

    @property
    def is_iptables(self) -> bool:
        return self.program.startswith(("iptables", "ip6tables"))

    @property
    def family(self) -> int | None:
        """6 for ip6tables*, 4 for iptables*, None for any other program."""
        if self.program.startswith("ip6tables"):
            return 6
        return 4 if self.program.startswith("iptables") else None

    @property
    def flags(self) -> frozenset[str]:
        """The options given: short letters one by one (`-nvL` -> n, v, L) and long options
        without their dashes (`--line-numbers` -> line-numbers)."""
        out: set[str] = set()
        for w in self.args:
            if w.startswith("--") and len(w) > 2:
                out.add(w[2:].split("=", 1)[0])
            elif w.startswith("-") and len(w) > 1:
                out.update(w[1:])
        return frozenset(out)

    def _iptables_option(self, letters: str, longs: tuple[str, ...], optional: bool) -> str | None:
        """The value after an iptables option (`-t nat`, `-tnat`, `--table=nat`), or for an
        option with an optional value (`-L [chain]`) the next word if it is not an option."""
        args = self.args
        for i, w in enumerate(args):
            nxt = args[i + 1] if i + 1 < len(args) else None
            if w.startswith("--"):
                name, eq, value = w[2:].partition("=")
                if name in longs:
                    if eq:
                        return value
                    if nxt is not None and not (optional and nxt.startswith("-")):
                        return nxt
                continue
            if not w.startswith("-") or len(w) < 2:
                continue
            for j, ch in enumerate(w[1:], start=1):
                if ch in letters:
                    rest = w[j + 1 :]
                    if rest and not optional:
                        return rest
                    if not rest and nxt is not None and not (optional and nxt.startswith("-")):
                        return nxt
                    break
                if ch == "t":  # -t takes the rest of the word: `-tnat`
                    break
        return None

    @property
    def table(self) -> str | None:
        """iptables' `-t TABLE` (None when not given: filter)."""
        if not self.is_iptables:
            return None
        return self._iptables_option("t", ("table",), optional=False)

    @property
    def chain(self) -> str | None:
        """The one chain listed (`-L INPUT`, `-nvL INPUT`, `-S INPUT`), None for all."""
        if not self.is_iptables:
            return None
        return self._iptables_option("LS", ("list", "list-rules"), optional=True)

    @property
    def listing(self) -> str | None:
        """Which iptables output this command prints: "save" (iptables-save), "rules" (-S),
        "list" (-L); None for another program or command."""
        if not self.is_iptables:
            return None
        if self.program.endswith("-save"):
            return "save"
        f = self.flags
        if "S" in f or "list-rules" in f:
            return "rules"
        if "L" in f or "list" in f:
            return "list"
        return None

    @property
    def ufw_args(self) -> tuple[str, ...] | None:
        """`ufw status numbered` -> ("status", "numbered"); None if not a ufw command."""
        return self.args if self.program == "ufw" else None

    @property
    def nc_targets(self) -> tuple[tuple[str, str], ...]:
        """(host, port) pairs this command connects to: `nc -vz HOST PORT [PORT...]`,
        `ncat HOST PORT`, `echo > /dev/tcp/HOST/PORT`. Ports as typed ("10250", "80-90")."""
        out: list[tuple[str, str]] = []
        for w in (*self.words, *self.text.split()):
            if "/dev/tcp/" in w or "/dev/udp/" in w:
                parts = w.split("/dev/", 1)[1].split("/")
                if len(parts) >= 3 and parts[2].strip():
                    port = parts[2].split()[0].rstrip(";)\"'&|<>")
                    if port and (parts[1], port) not in out:
                        out.append((parts[1], port))
        if out:
            return tuple(out)
        prog = self.program
        netcat = prog in ("nc", "ncat", "netcat") or prog.startswith("nc.")
        if not netcat and (prog != "busybox" or not self.args or self.args[0] != "nc"):
            return ()
        args = self.args[1:] if prog == "busybox" else self.args
        with_value = set("bIiMmOPpqsTVWwXxe") if prog != "ncat" else set("pswdei")
        positional: list[str] = []
        skip = False
        for w in args:
            if skip:
                skip = False
                continue
            if w.startswith("--"):
                skip = "=" not in w and w[2:] in {"wait", "source", "source-port", "proxy"}
                continue
            if w.startswith("-") and len(w) > 1:
                last = w[-1]
                skip = last in with_value and w[1:].index(last) == len(w) - 2
                continue
            positional.append(w)
        if len(positional) >= 2:
            return tuple((positional[0], p) for p in positional[1:])
        return ()


@dataclass(frozen=True, slots=True)
class Skipped:
    """Lines `first`..`last` (1-based, original numbering) were skipped or had a prefix
    removed; `what` says what they were."""

    first: int
    last: int
    what: str
    removed_prefix: bool = False  # the lines stay, only a prefix (`> `, `[ 1.2] `) went

    def note(self) -> str:
        one = self.first == self.last
        where = f"line {self.first}" if one else f"lines {self.first}-{self.last}"
        if self.removed_prefix:
            return f"removed {self.what} from {where}"
        return f"skipped {where}: {self.what}"

    def to_json(self) -> dict[str, object]:
        return {
            "first_line": self.first,
            "last_line": self.last,
            "what": self.what,
            "removed_prefix": self.removed_prefix,
        }


@dataclass(frozen=True, slots=True)
class Paste:
    """The result of clean(): see the module docstring."""

    text: str
    skipped: tuple[Skipped, ...] = ()
    commands: tuple[Command, ...] = ()
    ended_by_prompt: bool = False  # a prompt follows the output: the command had finished

    @property
    def command(self) -> Command | None:
        """The first command line of the paste (the one whose output it starts with)."""
        return self.commands[0] if self.commands else None

    def notes(self) -> list[str]:
        """One line per group of skipped lines or removed prefixes, in line order."""
        return [s.note() for s in self.skipped]

    def to_json(self) -> dict[str, object]:
        return {
            "skipped": [s.to_json() for s in self.skipped],
            "commands": [{"line": c.line, "command": c.text} for c in self.commands],
            "ended_by_prompt": self.ended_by_prompt,
        }


def _words(command: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(words of the first pipeline stage without wrappers, programs after each `|`)."""
    command = command[:_COMMAND_CHARS]
    try:
        lexer = shlex.shlex(command, posix=True, punctuation_chars="|;&")
        lexer.whitespace_split = True
        tokens = list(lexer)
    except ValueError:  # an unbalanced quote: words as typed
        tokens = command.split()
    stages: list[list[str]] = [[]]
    for t in tokens:
        if t and set(t) <= set("|;&"):
            stages.append([])
        else:
            stages[-1].append(t)
    first = stages[0]
    i = 0
    while i < len(first):
        w = first[i]
        assignment = "=" in w and w.split("=", 1)[0].isidentifier()  # LANG=C
        if w in _WRAPPERS or assignment:
            i += 1
            while i < len(first) and first[i].startswith("-"):
                i += 2 if first[i] in _WRAPPER_ARG_OPTS else 1
            continue
        if w == "timeout":  # timeout [-s SIG] [-k T] DURATION cmd
            i += 1
            while i < len(first) and first[i].startswith("-"):
                i += 2 if first[i] in ("-s", "-k", "--signal", "--kill-after") else 1
            i += 1
            continue
        break
    piped = tuple(s[0] for s in stages[1:] if s)
    return tuple(first[i:]), piped


def _is_command(rest: str) -> bool:
    """Whether `rest` starts with a known program and reads like a command line (not its
    output: `iptables: No chain/target/match by that name.` starts with iptables too)."""
    head = rest[:_HEAD_CHARS].split(None, 2)
    if not head:
        return False
    word = head[0].rsplit("/", 1)[-1]
    if word not in _PROGRAMS:
        return False
    if word in _WRAPPERS or word == "timeout":
        return len(head) > 1
    return True


def _bare_command(line: str) -> bool:
    """A command line with no prompt: `iptables -nvL`, `sudo ufw status`, `nc -vz h p`.
    Output lines of these tools start with `iptables:`, `iptables v1.8`, `nc:`, `ufw:`."""
    head = line[:_HEAD_CHARS].split(None, 2)
    if len(head) < 2:
        return False
    word, nxt = head[0], head[1]
    if word in ("sudo", "doas", "env") or ("=" in word and word.split("=", 1)[0].isidentifier()):
        return _bare_command(line.split(None, 1)[1])
    if word.startswith(("iptables", "ip6tables")) and word in _PROGRAMS:
        return nxt.startswith("-") or word.endswith("-save")
    if word == "ufw":
        return nxt in ("status", "enable", "disable", "reload", "show", "app", "allow", "deny")
    if word == "nft":
        return nxt in ("list", "-j", "-a", "-n", "--json")
    if word in ("nc", "ncat", "netcat", "nc.openbsd", "nc.traditional"):
        return nxt.startswith("-")
    if word == "az":
        return nxt in ("vm", "vmss", "network", "monitor", "aks")
    return False


def _prompt(line: str) -> tuple[str, str] | None:
    """(what, command) if `line` is a shell prompt, with or without a command after it."""
    head = line[:_HEAD_CHARS]
    for pattern in (_BRACKET, _AT_HOST, _SHELL, _POWERSHELL):
        m = pattern.match(head)
        if m:
            return "the shell prompt", line[m.end() :].strip()
    m = _PATHLIKE.match(head)
    if m and _is_command(line[m.end() :]):
        return "the shell prompt", line[m.end() :].strip()
    m = _BARE.match(head)
    if m:
        rest = line[m.end() :]
        if _is_command(rest):
            return "the shell prompt", rest.strip()
        if not rest.strip() and head[0] in "$#%":
            return "an empty shell prompt", ""
    return None


def _kind(line: str) -> tuple[str, str | None] | None:
    """What a whole line is if it is not output: (description, command or None)."""
    s = line.strip()
    if not s:
        return None
    if _FENCE.match(line):
        return "a markdown code fence", None
    if s.startswith("[sudo] password for") or s == "Password:":
        return "sudo's password prompt", None
    if s.startswith(_UFW_REPLIES):
        return "ufw's reply to another command", None
    p = _prompt(s)
    if p is not None:
        what, cmd = p
        return (f"{what} and command `{_short(cmd)}`" if cmd else what), (cmd or None)
    m = _HEADER.match(s)
    if m:
        rest = s[m.end() :]
        if _is_command(rest):
            return f"a markdown header holding the command `{_short(rest)}`", rest.strip()
        return "a markdown header", None
    if _bare_command(s):
        return f"the command line `{_short(s)}`", s
    return None


def _short(text: str, limit: int = 80) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _blockquoted(lines: list[str]) -> bool:
    """Every non-empty line starts with `>` and there are at least two: a markdown quote.
    (One `> iptables -L` line is a prompt, seen by _prompt.)"""
    seen = 0
    for ln in lines:
        if ln.strip():
            if not ln.lstrip(" ").startswith(">"):
                return False
            seen += 1
    return seen >= 2


def clean(text: str) -> Paste:
    """Remove what is clearly not tool output from `text` (see the module docstring)."""
    lines = text.split("\n")
    changed = False
    skipped: list[Skipped] = []
    crlf = [i for i, ln in enumerate(lines) if ln.endswith("\r")]
    if crlf:
        lines = [ln[:-1] if ln.endswith("\r") else ln for ln in lines]
        changed = True
    depth = 0
    while depth < 4 and _blockquoted(lines):
        lines = [_unquote(ln) for ln in lines]
        depth += 1
    if depth:
        n = len(lines) - (1 if lines and not lines[-1] else 0)
        skipped.append(Skipped(1, max(n, 1), "markdown blockquote marks `> `", True))
        changed = True
    console: list[int] = []
    for i, ln in enumerate(lines):
        m = _CONSOLE.match(ln)
        if m:
            lines[i] = ln[m.end() :]
            console.append(i + 1)
    if console:
        skipped.extend(_ranges(console, "console timestamps like `[   14.414142] `", True))
        changed = True

    commands: list[Command] = []
    marks: list[tuple[int, str]] = []  # (1-based line, description) of skipped lines
    prompts: list[int] = []  # 1-based lines that are a shell prompt
    last_kept = 0  # 1-based number of the last line kept with content
    for i, ln in enumerate(lines):
        k = _kind(ln)
        if k is None:
            if ln.strip():
                last_kept = i + 1
            continue
        what, cmd = k
        marks.append((i + 1, what))
        if what.startswith(("the shell prompt", "an empty shell prompt")):
            prompts.append(i + 1)
        if cmd is not None:
            words, piped = _words(cmd)
            commands.append(Command(i + 1, cmd, words, piped))
        lines[i] = ""
        changed = True
    ended = last_kept > 0 and any(n > last_kept for n in prompts)
    if marks:
        skipped.extend(_groups(marks))
        # skipped lines after the last kept one are dropped: no line number moves. The blank
        # lines the output itself ends with stay: ufw ends its listing with one, and that
        # blank line is what shows the listing whole.
        if marks[-1][0] > last_kept:
            keep = last_kept
            skipped_lines = {n for n, _ in marks}
            while keep < len(lines) and keep + 1 not in skipped_lines and not lines[keep].strip():
                keep += 1
            tail_newline = keep < len(lines)
            lines = lines[:keep] + ([""] if tail_newline else [])
    if not changed:
        return Paste(text)
    skipped.sort(key=lambda s: (s.first, s.removed_prefix))
    return Paste("\n".join(lines), tuple(skipped), tuple(commands), ended)


def _unquote(line: str) -> str:
    s = line.lstrip(" ")
    if not s.startswith(">"):
        return line
    s = s[1:]
    return s[1:] if s.startswith(" ") else s


def _ranges(numbers: list[int], what: str, prefix: bool) -> list[Skipped]:
    """Consecutive line numbers grouped into Skipped ranges."""
    out: list[Skipped] = []
    start = prev = numbers[0]
    for n in numbers[1:]:
        if n != prev + 1:
            out.append(Skipped(start, prev, what, prefix))
            start = n
        prev = n
    out.append(Skipped(start, prev, what, prefix))
    # a prefix on most lines with gaps (blank lines) reads better as one range
    if prefix and len(out) > 3:
        return [Skipped(numbers[0], numbers[-1], what + " (where present)", prefix)]
    return out


def _groups(marks: list[tuple[int, str]]) -> list[Skipped]:
    """Consecutive skipped lines of one description grouped into one Skipped."""
    out: list[Skipped] = []
    for n, what in marks:
        if out and out[-1].what == what and out[-1].last == n - 1:
            out[-1] = Skipped(out[-1].first, n, what)
        else:
            out.append(Skipped(n, n, what))
    return out
