"""Every Teams card the builder makes parses cleanly with the official Adaptive Cards parser
(npm `adaptivecards`, run in node by tests/e2e/teams_card_check.js): no parse event and no
validation event for 1.4. The checker itself is shown to fail on a card it must refuse."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from shared.notify.teams import build_payloads
from tests.skips import cannot_run
from tests.teams_card_samples import STATUS_PAGE, flip, hostile, oversized, several

ROOT = Path(__file__).resolve().parents[2]
CHECK = ROOT / "tests" / "e2e" / "teams_card_check.js"


def _check(cards: list[dict[str, Any]]) -> subprocess.CompletedProcess[str]:
    node = shutil.which("node")
    if node is None:
        cannot_run("the Adaptive Cards parser check needs node (Debian: apt-get install nodejs)")
    if not (ROOT / "node_modules" / "adaptivecards" / "dist" / "adaptivecards.js").is_file():
        cannot_run("npm package adaptivecards is not installed (run `npm install` in the repo)")
    return subprocess.run(
        [node, str(CHECK)],
        input=json.dumps(cards),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_every_card_the_builder_makes_passes_the_official_parser() -> None:
    payloads = [
        *build_payloads(several(), status_page_url=STATUS_PAGE),
        *build_payloads(hostile(), status_page_url=STATUS_PAGE),
        *build_payloads([oversized()]),
        *build_payloads([flip(node=f"n{i}") for i in range(150)], status_page_url=STATUS_PAGE),
    ]
    cards = [p["attachments"][0]["content"] for p in payloads]
    result = _check(cards)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{len(cards)} cards valid"


def test_the_checker_fails_on_parse_and_validation_events() -> None:
    (payload,) = build_payloads([flip()])
    card = payload["attachments"][0]["content"]
    newer = {**card, "body": [*card["body"], {"type": "Table", "columns": []}]}  # 1.5 element
    no_url = {**card, "actions": [{"type": "Action.OpenUrl", "title": "x"}]}
    for bad, says in ((newer, "Table"), (no_url, "url")):
        result = _check([bad])
        assert result.returncode == 1
        assert says in result.stderr
