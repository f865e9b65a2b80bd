"""Record the (key, shape) layout of each official network checkpoint (`python tools/record_layouts.py`).

The layouts come from the test-only transcriptions of the official definitions
(tests/models/official_nets.py), built at 1000 classes as released, and are shipped as package
data (attn_export/models/layouts/*.json) so the loader can name the layout a checkpoint resembles.
No release file was ever seen here (none can be downloaded): every layout says so.
"""

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
OUT = ROOT / "attn_export" / "models" / "layouts"


def layouts() -> dict[str, dict]:
    from tests.models.official_nets import OFFICIAL

    out = {}
    for name, (build, network, source, saved, origin) in OFFICIAL.items():
        sd = build().state_dict()
        out[name] = {
            "name": name, "network": network, "source": source, "origin": origin,
            "saved_as": {"plain": "a bare state_dict",
                         "dataparallel": "{'state_dict': ...} with 'module.' prefixes "
                         "(DataParallel), as the release's training script saves it"}[saved],
            "seen_as_file": False,
            "keys": [[k, list(v.shape)] for k, v in sd.items()],
        }
    return out


def rendered() -> dict[str, str]:
    return {f"{n}.json": json.dumps(layout, indent=1) + "\n" for n, layout in layouts().items()}


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    for filename, text in rendered().items():
        (OUT / filename).write_text(text)
        print(f"wrote {OUT / filename}")
