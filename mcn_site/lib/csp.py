"""Content-Security-Policy helpers (the policy itself: mcn_site/settings.py CONTENT_SECURITY_POLICY)."""

import base64
import hashlib
import re
from pathlib import Path

_INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>(.*?)</script>", re.S)


def inline_script_hashes(folder: Path) -> list[str]:
    """The CSP source ('sha256-…') of each constant inline <script> in the templates under `folder`.

    For a third-party app's pages whose inline scripts we cannot move: allowing exactly these scripts
    keeps script-src closed to anything injected. A script that holds template code is left out (its
    text varies per page), and a new version's changed script simply stops running until listed again.
    """
    sources = set()
    for template in sorted(folder.rglob("*.html")):
        for body in _INLINE_SCRIPT.findall(template.read_text(encoding="utf-8")):
            if "{{" in body or "{%" in body:
                continue
            digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
            sources.add(f"'sha256-{digest}'")
    return sorted(sources)
