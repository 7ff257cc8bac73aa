"""The ufw application profiles whose ports we know for sure.

`ufw status` and `ufw status numbered` print an application rule by profile name only
(`OpenSSH`, `Nginx Full`); `ufw status verbose` prints its ports too (`22/tcp (OpenSSH)`),
so verbose captures never need this table. The profiles below are the ones Ubuntu packages
ship in /etc/ufw/applications.d: openssh-server, nginx-common, apache2, samba and ufw's own files.
An administrator can edit a profile in place; we cannot see that from a status capture, so
this is the one assumption the analyzer makes about apps. Any other name is undecided.
"""

from __future__ import annotations

from shared.analysis.ufw.model import PortSet

__all__ = ["KNOWN_APPS", "app_ports"]

_TCP = "tcp"
_ANY = "any"

# name -> ((protocol, ports), ...): one entry per `ports=` alternative of the profile.
KNOWN_APPS: dict[str, tuple[tuple[str, PortSet], ...]] = {
    "OpenSSH": ((_TCP, PortSet(((22, 22),))),),  # openssh-server
    "Nginx HTTP": ((_TCP, PortSet(((80, 80),))),),  # nginx-common
    "Nginx HTTPS": ((_TCP, PortSet(((443, 443),))),),
    "Nginx Full": ((_TCP, PortSet(((80, 80), (443, 443)))),),
    "Apache": ((_TCP, PortSet(((80, 80),))),),  # apache2
    "Apache Secure": ((_TCP, PortSet(((443, 443),))),),
    "Apache Full": ((_TCP, PortSet(((80, 80), (443, 443)))),),
    "SSH": ((_TCP, PortSet(((22, 22),))),),  # ufw's own ufw-loginserver
    "Telnet": ((_TCP, PortSet(((23, 23),))),),
    "WWW": ((_TCP, PortSet(((80, 80),))),),  # ufw's own ufw-webserver
    "WWW Secure": ((_TCP, PortSet(((443, 443),))),),
    "WWW Full": ((_TCP, PortSet(((80, 80), (443, 443)))),),
    "WWW Cache": ((_TCP, PortSet(((8080, 8080),))),),
    "DNS": ((_ANY, PortSet(((53, 53),))),),  # ufw's own ufw-dnsserver
    # samba: often used on the wrong side (`ufw allow from any app Samba` matches the
    # client's source port), which is why a node that runs Samba can show it before 10250.
    "Samba": (("udp", PortSet(((137, 138),))), (_TCP, PortSet(((139, 139), (445, 445))))),
}


def app_ports(name: str) -> tuple[tuple[str, PortSet], ...] | None:
    """The (protocol, ports) alternatives of a known profile, or None when unknown."""
    return KNOWN_APPS.get(name)
