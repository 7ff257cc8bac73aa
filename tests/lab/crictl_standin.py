"""A stand-in for `crictl` on a lab node: prints the containers the node's state file lists.

Runs inside a node (the lab makes it visible as /usr/sbin/crictl there, nowhere else) and reads
the JSON file named by TW_LAB_CRICTL_STATE: {"containers": [<tests.lab.faults.Container
fields>]}. It speaks the part of crictl the probe uses, with crictl's own output shapes:

    crictl [global flags] ps [-a] [-q] [--name REGEX] [--state S] [--id ID] [-o json|table]
    crictl [global flags] inspect [-o json|go-template] [--template T] ID...
    crictl version

`ps` lists running containers only unless -a, newest first; -q prints full IDs; --name is a
regular expression searched in the container name (crictl uses regexp.MatchString). `inspect`
prints {"status": {...}, "info": {}} per ID as crictl does (times in RFC 3339, a running
container's finishedAt the zero Unix time), or the go-template applied to that document
(field paths like `{{.status.metadata.name}}`, `{{json .x}}` and `{{index .m "key"}}`; a missing key prints
`<no value>` as Go's text/template does). IDs may be unique prefixes. Unknown subcommands and
flags fail with a non-zero status, like the real tool. Global flags (-r/--runtime-endpoint,
-i/--image-endpoint, -t/--timeout, -c/--config, -D/--debug) are accepted and ignored.
"""

from __future__ import annotations

import json
import os
import re
import sys
from typing import Any

_GLOBAL_VALUE = {"-r", "--runtime-endpoint", "-i", "--image-endpoint", "-t", "--timeout",
                 "-c", "--config"}  # fmt: skip
_GLOBAL_BOOL = {"-D", "--debug"}
_PS_VALUE = {"--name", "--state", "-s", "--id", "--label", "-p", "--pod", "--image", "-o",
             "--output", "-n", "--last"}  # fmt: skip
_PS_BOOL = {"-a", "--all", "-q", "--quiet", "--no-trunc", "-v", "--verbose", "-l", "--latest",
            "--resolve-image-path"}  # fmt: skip
_INSPECT_VALUE = {"-o", "--output", "--template"}
_INSPECT_BOOL = {"-q", "--quiet"}
_STATES = {"created": "CONTAINER_CREATED", "running": "CONTAINER_RUNNING",
           "exited": "CONTAINER_EXITED", "unknown": "CONTAINER_UNKNOWN"}  # fmt: skip


class Usage(Exception):
    pass


def _parse(args: list[str], values: set[str], bools: set[str]) -> tuple[dict[str, str], list[str]]:
    """Flags (`--f v`, `--f=v`, `-aq`) and positional arguments, urfave/cli style."""
    opts: dict[str, str] = {}
    rest: list[str] = []
    i = 0
    while i < len(args):
        a = args[i]
        i += 1
        if a == "--":
            rest += args[i:]
            break
        if not a.startswith("-") or a == "-":
            rest.append(a)
            continue
        name, eq, inline = a.partition("=")
        if name in values:
            if eq:
                opts[name] = inline
            elif i < len(args):
                opts[name] = args[i]
                i += 1
            else:
                raise Usage(f"flag needs an argument: {name}")
        elif name in bools and not eq:
            opts[name] = "true"
        elif (
            not name.startswith("--") and len(name) > 2 and all(f"-{c}" in bools for c in name[1:])
        ):
            for c in name[1:]:
                opts[f"-{c}"] = "true"
        else:
            raise Usage(f"flag provided but not defined: {name}")
    return opts, rest


def _flag(opts: dict[str, str], *names: str) -> str | None:
    for n in names:
        if n in opts:
            return opts[n]
    return None


def _load() -> list[dict[str, Any]]:
    path = os.environ.get("TW_LAB_CRICTL_STATE", "")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        # what crictl says when the runtime socket is missing or dead
        raise RuntimeError(
            "validate service connection: validate CRI v1 runtime API for endpoint "
            f'"unix:///run/containerd/containerd.sock": {e}'
        ) from None
    return list(data["containers"])


def _ps(args: list[str], containers: list[dict[str, Any]]) -> int:
    opts, rest = _parse(args, _PS_VALUE, _PS_BOOL)
    if rest:
        raise Usage(f"ps takes no arguments, got {rest[0]!r}")
    shown = sorted(containers, key=lambda c: c["created_at"], reverse=True)
    state = _flag(opts, "--state", "-s")
    if state is not None:
        wanted = _STATES.get(state.lower())
        if wanted is None:
            raise Usage("--state should be one of created, running, exited or unknown")
        shown = [c for c in shown if c["state"] == wanted]
    elif _flag(opts, "-a", "--all") is None:
        shown = [c for c in shown if c["state"] == "CONTAINER_RUNNING"]
    name = _flag(opts, "--name")
    if name:
        try:
            pattern = re.compile(name)
        except re.error as e:
            raise Usage(f"--name: {e}") from None
        shown = [c for c in shown if pattern.search(c["name"])]
    cid = _flag(opts, "--id")
    if cid:
        shown = [c for c in shown if c["id"].startswith(cid)]
    pod = _flag(opts, "-p", "--pod")
    if pod:
        shown = [c for c in shown if c["pod_id"].startswith(pod)]
    if _flag(opts, "-l", "--latest"):
        shown = shown[:1]
    last = _flag(opts, "-n", "--last")
    if last is not None:
        if not last.isdigit():
            raise Usage(f"invalid value {last!r} for flag --last")
        shown = shown[: int(last)] if int(last) else shown
    if _flag(opts, "-q", "--quiet"):
        for c in shown:
            print(c["id"])
        return 0
    output = _flag(opts, "-o", "--output") or "table"
    if output == "json":
        print(json.dumps({"containers": [_summary(c) for c in shown]}, indent=2))
        return 0
    if output != "table":
        raise Usage(f"unsupported output format {output!r}")
    full = _flag(opts, "--no-trunc") is not None
    cols = ("CONTAINER", "IMAGE", "CREATED", "STATE", "NAME", "ATTEMPT", "POD ID", "POD")
    rows = [cols] + [
        (c["id"] if full else c["id"][:13], c["image"].rsplit("/", 1)[-1], "About an hour ago",
         c["state"].removeprefix("CONTAINER_").title(), c["name"], str(c["attempt"]),
         c["pod_id"] if full else c["pod_id"][:13], c["pod"])
        for c in shown
    ]  # fmt: skip
    widths = [max(len(r[i]) for r in rows) + 3 for i in range(len(cols))]
    for r in rows:
        print("".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
    return 0


def _summary(c: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": c["id"], "podSandboxId": c["pod_id"],
        "metadata": {"name": c["name"], "attempt": c["attempt"]},
        "image": {"image": c["image"]}, "imageRef": c["image"], "state": c["state"],
        "createdAt": c["created_at"], "labels": _labels(c), "annotations": {},
    }  # fmt: skip


def _labels(c: dict[str, Any]) -> dict[str, str]:
    return {"io.kubernetes.container.name": c["name"], "io.kubernetes.pod.name": c["pod"],
            "io.kubernetes.pod.namespace": "kube-system"}  # fmt: skip


def _status(c: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": c["id"],
        "metadata": {"attempt": c["attempt"], "name": c["name"]},
        "state": c["state"],
        "createdAt": c["created_at"],
        "startedAt": c["started_at"],
        "finishedAt": c["finished_at"],
        "exitCode": c["exit_code"],
        "image": {
            "annotations": {},
            "image": c["image"],
            "runtimeHandler": "",
            "userSpecifiedImage": "",
        },
        "imageRef": c["image"],
        "reason": c["reason"],
        "message": c["message"],
        "labels": _labels(c),
        "annotations": {"io.kubernetes.container.restartCount": str(c["attempt"])},
        "mounts": [],
        "logPath": f"/var/log/pods/kube-system_{c['pod']}_{c['pod_id'][:36]}/{c['name']}/"
        f"{c['attempt']}.log",
    }


_ACTION = re.compile(r"\{\{-?\s*(.*?)\s*-?\}\}")


def _lookup(doc: Any, path: str) -> Any:
    if path == ".":
        return doc
    if not re.fullmatch(r"(\.[A-Za-z_][A-Za-z0-9_]*)+", path):
        raise Usage(f'template: tmplExecuteRawJSON:1: unexpected "{path}" in command')
    value = doc
    for key in path[1:].split("."):
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|\S+')


def _arg(doc: dict[str, Any], token: str) -> Any:
    if token.startswith('"'):
        return json.loads(token)  # a Go string literal: the same escapes as JSON's
    return _lookup(doc, token)


def _text(value: Any) -> str:
    """How Go's text/template prints a value decoded from JSON."""
    if value is None:
        return "<no value>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


def _render(template: str, doc: dict[str, Any]) -> str:
    """Field paths, `json X` and `index X "key"...`: what crictl users write."""

    def action(m: re.Match[str]) -> str:
        words = _TOKEN.findall(m.group(1))
        if not words:
            raise Usage("template: tmplExecuteRawJSON:1: missing value for command")
        if words[0] == "json" and len(words) == 2:
            return json.dumps(_arg(doc, words[1]))
        if words[0] == "index" and len(words) >= 3:
            value = _arg(doc, words[1])
            for key in words[2:]:
                k = _arg(doc, key)
                if isinstance(value, dict):
                    value = value.get(k)
                elif isinstance(value, list) and isinstance(k, int) and 0 <= k < len(value):
                    value = value[k]
                else:
                    raise Usage(f"template: tmplExecuteRawJSON:1: error calling index: {k!r}")
            return "<no value>" if value is None else _text(value)
        if len(words) != 1 or not words[0].startswith("."):
            raise Usage(f'template: tmplExecuteRawJSON:1: function "{words[0]}" not defined')
        return _text(_lookup(doc, words[0]))

    return _ACTION.sub(action, template)


def _inspect(args: list[str], containers: list[dict[str, Any]]) -> int:
    opts, ids = _parse(args, _INSPECT_VALUE, _INSPECT_BOOL)
    if not ids:
        raise Usage("ID cannot be empty")
    output = _flag(opts, "-o", "--output") or "json"
    template = _flag(opts, "--template")
    if output == "go-template" and not template:
        raise Usage("template can't be empty")
    if output not in ("json", "go-template"):
        raise Usage(f"unsupported output format {output!r}")
    status = 0
    for wanted in ids:
        found = [c for c in containers if c["id"].startswith(wanted)]
        if len(found) != 1:
            what = "not found" if not found else "ambiguous"
            print(
                f'getting the status of the container "{wanted}": rpc error: code = NotFound '
                f'desc = an error occurred when try to find container "{wanted}": {what}',
                file=sys.stderr,
            )
            status = 1
            continue
        doc = {"status": _status(found[0]), "info": {}}
        if output == "go-template":
            assert template is not None
            print(_render(template, doc))
        else:
            print(json.dumps(doc, indent=2))
    return status


def main(argv: list[str]) -> int:
    try:
        rest = _parse_globals(argv)
        if not rest:
            raise Usage("a command is required (ps, inspect, version)")
        command, args = rest[0], rest[1:]
        if command == "version":
            print("Version:  0.1.0\nRuntimeName:  containerd\nRuntimeVersion:  1.7.22-1\n"
                  "RuntimeApiVersion:  v1")  # fmt: skip
            return 0
        if command not in ("ps", "inspect"):
            print(f"crictl: '{command}' is not a command this node lab stand-in knows "
                  "(ps, inspect, version)", file=sys.stderr)  # fmt: skip
            return 1
        containers = _load()
        return _ps(args, containers) if command == "ps" else _inspect(args, containers)
    except Usage as e:
        print(f"Incorrect Usage: {e}", file=sys.stderr)
        return 1
    except RuntimeError as e:
        print(f"E1122 00:00:00.000000 1 remote_runtime.go:0] {e}", file=sys.stderr)
        return 1


def _parse_globals(argv: list[str]) -> list[str]:
    """Global flags come before the command; everything from the command on is its own."""
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        name, eq, _ = argv[i].partition("=")
        if name in _GLOBAL_VALUE and not eq:
            i += 2
        elif name in _GLOBAL_VALUE or name in _GLOBAL_BOOL:
            i += 1
        else:
            raise Usage(f"flag provided but not defined: {name}")
    return argv[i:]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
