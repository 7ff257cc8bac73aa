"""Secret formats the product must never let out, and ordinary text it must leave alone.

Every value is made up here (derived from fixed strings by hashing, so the file holds no
literal that looks like a real key, and every run uses the same values). SECRETS pairs a
text as an ARM error, a log line or a probe output could carry it with the part that must
not survive; the tests of every exit (logs, stderr, --json, tables, queue) use this one list.
"""

from __future__ import annotations

import base64
import hashlib
import json
from urllib.parse import quote

__all__ = ["ORDINARY", "SECRETS", "Sample", "secrets_in"]


def _b64(label: str, size: int) -> str:
    raw = hashlib.shake_256(label.encode()).digest(size)
    return base64.b64encode(raw).decode()


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


ACCOUNT_KEY = _b64("fake storage account key", 64)  # 88 characters ending ==
SB_KEY = _b64("fake service bus key", 32)  # 44 characters ending =
SAS_SIG = _b64("fake sas signature", 32)
JWT = ".".join(
    (
        _b64url(json.dumps({"alg": "RS256", "typ": "JWT", "kid": "fake"}).encode()),
        _b64url(json.dumps({"aud": "https://management.azure.com", "oid": "fake"}).encode()),
        _b64url(hashlib.sha512(b"fake jwt signature").digest()),
    )
)
SHARED_KEY_SIG = _b64("fake shared key signature", 32)
BASIC = base64.b64encode(b"deploy:Fake-Passw0rd-Basic").decode()
WEBHOOK_TOKEN = hashlib.sha256(b"fake teams webhook").hexdigest()
LOGIC_SIG = _b64url(hashlib.sha256(b"fake logic apps sig").digest())
FUNCTION_KEY = _b64url(hashlib.sha256(b"fake function key").digest()) + "=="


class Sample:
    """One format: `text` as it could appear, `secret` the part that must not survive."""

    def __init__(self, name: str, text: str, secret: str) -> None:
        self.name, self.text, self.secret = name, text, secret

    def __repr__(self) -> str:
        return self.name


SECRETS = (
    Sample(
        "storage connection string",
        "DefaultEndpointsProtocol=https;AccountName=stfake01;"
        f"AccountKey={ACCOUNT_KEY};EndpointSuffix=core.windows.net",
        ACCOUNT_KEY,
    ),
    Sample(
        "service bus connection string",
        "Endpoint=sb://ns-fake.servicebus.windows.net/;SharedAccessKeyName=RootManageSharedAccessKey;"
        f"SharedAccessKey={SB_KEY}",
        SB_KEY,
    ),
    Sample(
        "sql connection string",
        "Server=tcp:sql-fake.database.windows.net,1433;User ID=tw;Password=Fake-Sql-Pa55word;",
        "Fake-Sql-Pa55word",
    ),
    Sample("raw account key", f"the key is {ACCOUNT_KEY} (rotated)", ACCOUNT_KEY),
    Sample(
        "blob SAS url",
        "GET https://stfake01.blob.core.windows.net/c/b.txt?sv=2022-11-02&ss=b&srt=o&sp=r"
        f"&se=2030-01-01T00:00:00Z&sig={quote(SAS_SIG, safe='')} failed",
        quote(SAS_SIG, safe=""),
    ),
    Sample(
        "SharedAccessSignature header",
        "Authorization: SharedAccessSignature sr=https%3A%2F%2Fns-fake.servicebus.windows.net"
        f"&sig={quote(SB_KEY, safe='')}&se=1900000000&skn=send",
        quote(SB_KEY, safe=""),
    ),
    Sample("bearer header", f"Authorization: Bearer {JWT}", JWT.split(".")[1]),
    Sample("bare JWT", f"token {JWT} was rejected", JWT.split(".")[2]),
    Sample(
        "SharedKey header", f"Authorization: SharedKey stfake01:{SHARED_KEY_SIG}", SHARED_KEY_SIG
    ),
    Sample("Basic header", f"Authorization: Basic {BASIC}", BASIC),
    Sample(
        "JSON password",
        '{"username": "admin", "password": "Fake-Json-Pa55word", "port": 443}',
        "Fake-Json-Pa55word",
    ),
    Sample(
        "JSON client secret",
        '{"clientId": "00000000-0000-0000-0000-00000000000a", "client_secret": "Fake~Cl1ent.Secret"}',
        "Fake~Cl1ent.Secret",
    ),
    Sample(
        "JSON token",
        '{"access_token":"fake-opaque-token-1234","expires_in":3599}',
        "fake-opaque-token-1234",
    ),
    Sample("JSON key", f'{{"keyName": "key1", "value": "x", "primaryKey": "{SB_KEY}"}}', SB_KEY),
    Sample("python repr secret", "{'secret': 'Fake-Repr-Secret', 'name': 'x'}", "Fake-Repr-Secret"),
    Sample(
        "Teams webhook",
        f"https://contoso.webhook.office.com/webhookb2/0f0e0d0c-0000-4000-8000-000000000001@"
        f"0f0e0d0c-0000-4000-8000-000000000002/IncomingWebhook/{WEBHOOK_TOKEN}/"
        "0f0e0d0c-0000-4000-8000-000000000003",
        WEBHOOK_TOKEN,
    ),
    Sample(
        "Workflows webhook",
        "https://prod-27.westeurope.logic.azure.com:443/workflows/abcdef0123456789/triggers/"
        "manual/paths/invoke?api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0"
        f"&sig={LOGIC_SIG}",
        LOGIC_SIG,
    ),
    Sample(
        "Power Automate webhook",
        "https://default0f0e0d0c00004000.80.environment.api.powerplatform.com:443/powerautomate/"
        "automations/direct/workflows/0123abcd/triggers/manual/paths/invoke?api-version=1"
        f"&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig={LOGIC_SIG}",
        LOGIC_SIG,
    ),
    Sample(
        "Slack webhook",
        "https://hooks.slack.com/services/TFAKE0001/BFAKE0002/FakeSlackToken0123456789",
        "FakeSlackToken0123456789",
    ),
    Sample("url password", "https://deploy:Fake-Url-Pa55@scm.example.com/x.git", "Fake-Url-Pa55"),
    Sample(
        "function key",
        f"https://fn-fake.azurewebsites.net/api/hook?code={FUNCTION_KEY}",
        FUNCTION_KEY,
    ),
    Sample(
        "client_secret pair",
        "grant_type=client_credentials&client_secret=Fake-Form-Secret",
        "Fake-Form-Secret",
    ),
)

# Text of the kind the product prints and stores every day: none of it may change.
ORDINARY = (
    "/subscriptions/11111111-1111-1111-1111-111111111111/resourceGroups/rg-café(prod)/providers/"
    "Microsoft.ContainerService/managedClusters/aks-shop",
    "/subscriptions/11111111-1111-1111-1111-111111111111/resourceGroups/MC_rg_aks_westeurope/providers/"
    "Microsoft.Compute/virtualMachineScaleSets/aks-nodepool1-12345678-vmss/virtualMachines/3",
    "10.224.0.4 -> 20.61.14.2:443 tcp denied by rule DenyAll (priority 100); 2001:db8::1/64",
    "-A INPUT -s 10.244.0.0/16 -p tcp -m tcp --dport 10250 -m comment --comment "
    '"kube-system/konnectivity-agent:https" -j DROP',
    "-A KUBE-FIREWALL ! -s 127.0.0.0/8 -d 127.0.0.0/8 -m conntrack ! --ctstate "
    "RELATED,ESTABLISHED,DNAT -j DROP",
    "ufw: 10250/tcp DENY IN Anywhere; table inet filter { chain input { type filter hook input "
    "priority 0; policy drop; } }",
    "fingerprint 0f1e2d3c4b5a69788796a5b4c3d2e1f0 of finding nsg.inbound key rule-1",
    "run scan-20261122T040000Z-7f3a1c (probe:triage:nodepool1), request 3f2b1c4d-0a1b-4c2d-8e3f-1a2b3c4d5e6f",
    "(AuthorizationFailed) The client 'a' with object id 'b' does not have authorization to perform "
    "action 'Microsoft.Network/loadBalancers/read'. Code: AuthorizationFailed",
    "az network nsg rule update -g rg-batch -n deny-all --nsg-name nsg-1 --priority 101",
    "SNAT ports 1024/1024 (100%) on 20.61.14.2; error code=403; token bucket empty; key rotation due",
    "Basic load balancer; Standard SKU; the bearer of bad news",
    "https://management.azure.com/subscriptions/x/providers/Microsoft.ContainerService/"
    "managedClusters?api-version=2024-05-01&$skiptoken=abc",
    '{"check": "nsg.inbound", "fingerprint": "0f1e2d3c4b5a69788796a5b4c3d2e1f0", "port": 10250}',
)


def secrets_in(text: str) -> list[str]:
    """The names of the samples whose secret appears in `text`."""
    return [s.name for s in SECRETS if s.secret in text]
