"""Real ufw inside a lab namespace, with its own configuration and nothing shared.

`ip netns exec NAME` bind-mounts every entry of /etc/netns/NAME over /etc/<entry>. So
/etc/netns/NAME/ufw and /etc/netns/NAME/default give the namespace its own /etc/ufw and
/etc/default/ufw: every ufw command run through `UfwHost.ufw` (even `ufw --force reset`,
which renames and copies files inside /etc/ufw) changes only those copies, and the rules it
loads live in the namespace's own netfilter tables. The copies start from the machine's
/etc/ufw with the *.rules files taken from the package's templates (/usr/share/ufw/iptables),
so a ufw configured on this machine does not leak in.

ufw serialises itself with a lock on /run/ufw.lock, which all namespaces share; each command
mounts a private tmpfs on /run first (inside the mount namespace `ip netns exec` makes for
it), so namespaces in parallel threads do not queue behind one lock. The namespaces' tables
are independent, and within one namespace the commands run one after another.

`ufw enable` also applies /etc/ufw/sysctl.conf; its keys (net.ipv4.conf.*, icmp_*) are per
network namespace, so the machine's own settings stay as they are.

`close()` removes /etc/netns/NAME; the Lab removes the namespace itself.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

from tests.lab.netns import Host

__all__ = ["UfwHost", "machine_ufw_snapshot", "ufw_unavailable_reason"]

_ETC_UFW = Path("/etc/ufw")
_ETC_DEFAULT = Path("/etc/default")
_TEMPLATES = Path("/usr/share/ufw/iptables")
_NETNS_ETC = Path("/etc/netns")
# sh -c: give this command a private /run, then exec ufw with the arguments.
_PRIVATE_RUN = 'mount -t tmpfs twufwrun /run && exec ufw "$@"'


def ufw_unavailable_reason() -> str:
    """Empty when ufw and its pristine files are here; otherwise what is missing."""
    if shutil.which("ufw") is None:
        return "ufw is not installed"
    for path in (_ETC_UFW / "ufw.conf", _ETC_DEFAULT / "ufw", _TEMPLATES / "user.rules"):
        if not path.exists():
            return f"{path} is missing"
    return ""


def machine_ufw_snapshot() -> dict[str, str]:
    """Digests of the machine's /etc/ufw and /etc/default/ufw, to prove the lab left them be."""
    paths = [p for p in sorted(_ETC_UFW.rglob("*")) if p.is_file()] + [_ETC_DEFAULT / "ufw"]
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in paths if p.exists()}


class UfwHost:
    """A lab host whose ufw has its own /etc/ufw and /etc/default (see the module doc)."""

    def __init__(self, host: Host, *, ipv6: bool = True) -> None:
        self.host = host
        self.root = _NETNS_ETC / host.name
        self.root.mkdir(parents=True, exist_ok=False)
        try:
            shutil.copytree(_ETC_UFW, self.root / "ufw", symlinks=True)
            for template in _TEMPLATES.glob("*.rules"):
                shutil.copy2(template, self.root / "ufw" / template.name)
            conf = self.root / "ufw" / "ufw.conf"
            conf.write_text(_set_key(conf.read_text(), "ENABLED", "no"))
            shutil.copytree(_ETC_DEFAULT, self.root / "default", symlinks=True)
            defaults = self.root / "default" / "ufw"
            defaults.write_text(_set_key(defaults.read_text(), "IPV6", "yes" if ipv6 else "no"))
        except BaseException:
            self.close()
            raise

    def ufw(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.host.exec(["sh", "-c", _PRIVATE_RUN, "sh", *args], check=check, timeout=60)

    def add_app_profile(self, filename: str, text: str) -> None:
        (self.root / "ufw" / "applications.d" / filename).write_text(text)

    def reset(self) -> None:
        """`ufw --force reset`, then drop its timestamped backups (a second reset within
        the same second would refuse to overwrite them)."""
        self.ufw("--force", "reset")
        for backup in (self.root / "ufw").glob("*.rules.[0-9]*"):
            backup.unlink()

    def clear_rate_limits(self) -> None:
        """Forget the `recent` hits LIMIT rules count (/proc/net is the namespace's own)."""
        script = 'for f in /proc/net/xt_recent/*; do [ -f "$f" ] && echo / > "$f"; done; true'
        self.host.exec(["sh", "-c", script])

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def _set_key(text: str, key: str, value: str) -> str:
    lines = [ln for ln in text.splitlines() if not ln.startswith(f"{key}=")]
    return "\n".join([*lines, f"{key}={value}"]) + "\n"
