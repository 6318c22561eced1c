"""One export in a fresh process, so its peak RSS is its own: `python -m bench.child SPEC_JSON`.

Prints one JSON line: seconds (the task call only), rows, bytes, sha256 (of the file,
read back after the timing), rss_before_kb (peak RSS after imports and app set-up,
before the export) and peak_rss_kb. The spec's optional `settings` are more core
settings (the `mapping` section: DATA_MAPPING and where the bank's tables are); with
`keep` true the file is left in place and its `path` printed too.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from datetime import date


def vm_hwm_kb() -> int:
    """Peak RSS of this process image (VmHWM; unlike ru_maxrss it is not inherited across exec)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def main() -> None:
    spec = json.loads(sys.argv[1])
    from core.logging import configure_logging

    configure_logging("console", "WARNING")
    import plugins.export
    from core import create_app, load_settings

    app = create_app(
        load_settings(
            database_url=spec["database_url"],
            redis_url=spec["redis_url"],
            banktasks_var_dir=spec["var_dir"],
            banktasks_config=os.path.join(spec["var_dir"], "none.toml"),
            log_level="WARNING",
            **spec.get("settings", {}),
        ),
        plugins=["export"],
    )
    app.runtime.db.create_all()
    before = vm_hwm_kb()
    started = time.perf_counter()
    result = plugins.export.export_transaction_data(
        user_id=spec["user_id"],
        start_date=date.fromisoformat(spec["start_date"]),
        end_date=date.fromisoformat(spec["end_date"]),
        export_format="csv",
    )
    seconds = time.perf_counter() - started
    peak = vm_hwm_kb()
    digest = hashlib.sha256()
    with open(result["path"], "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    if not spec.get("keep"):
        os.unlink(result["path"])
    app.runtime.db.dispose()
    print(
        json.dumps(
            {
                "seconds": seconds,
                "rows": result["rows"],
                "bytes": result["bytes"],
                "sha256": digest.hexdigest(),
                "rss_before_kb": before,
                "peak_rss_kb": peak,
                **({"path": result["path"]} if spec.get("keep") else {}),
            }
        )
    )


if __name__ == "__main__":
    main()
