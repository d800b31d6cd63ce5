"""The Grafana dashboard's panels, drawn from a real Prometheus scraping the server under load.

    python -m bench.dashboard --out bench/grafana/dashboard.png

Starts the simulator and the server (with METRICS_TOKEN), and Debian's `prometheus` scraping
/metrics every 2 s; runs waves of simulated patients (bench/load_and_fault.py) with upstream drops
and goAways; then asks Prometheus for every query of bench/grafana/intake-relay.json over the
run and draws each panel where the dashboard puts it. No Grafana can be installed here, so the
drawing is matplotlib's; the queries, the series and the layout are the dashboard's.
"""

import argparse
import asyncio
import json
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from bench.load_and_fault import run_all  # noqa: E402
from bench.relay import free_port  # noqa: E402
from config import Settings  # noqa: E402
from tests.live_support import live_server  # noqa: E402
from tests.sim_support import running_simulator  # noqa: E402

DASHBOARD = Path(__file__).resolve().parent / "grafana" / "intake-relay.json"
SCRAPE_SECONDS = 2
# Grafana's unit ids, as an axis says them.
UNITS = {"decmbytes": "MB", "Bps": "bytes/s", "short": ""}


@contextmanager
def prometheus(target: str, token: str) -> Iterator[str]:
    binary = shutil.which("prometheus")
    if binary is None:
        raise SystemExit("needs Prometheus: apt-get install prometheus")
    with tempfile.TemporaryDirectory(prefix="bench-prometheus-") as tmp:
        config = {
            "global": {"scrape_interval": f"{SCRAPE_SECONDS}s", "evaluation_interval": f"{SCRAPE_SECONDS}s"},
            "scrape_configs": [
                {
                    "job_name": "intake",
                    "authorization": {"credentials": token},
                    "static_configs": [{"targets": [target]}],
                }
            ],
        }
        (Path(tmp) / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
        address = f"127.0.0.1:{free_port()}"
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={tmp}/prometheus.yml",
                f"--storage.tsdb.path={tmp}/data",
                f"--web.listen-address={address}",
                "--log.level=warn",
            ],
            stderr=subprocess.DEVNULL,
        )
        try:
            url = f"http://{address}"
            deadline = time.monotonic() + 30
            while True:
                try:
                    if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline or process.poll() is not None:
                    raise SystemExit("Prometheus did not start")
                time.sleep(0.2)
            yield url
        finally:
            process.terminate()
            process.wait(timeout=20)


def query_range(url: str, expr: str, start: float, end: float) -> list[dict[str, Any]]:
    answer = httpx.get(
        f"{url}/api/v1/query_range",
        params={"query": expr, "start": start, "end": end, "step": SCRAPE_SECONDS},
        timeout=30,
    ).json()
    if answer.get("status") != "success":
        raise SystemExit(f"Prometheus refused {expr!r}: {answer.get('error')}")
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


def legend(template: str, labels: dict[str, str]) -> str:
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), template).strip() or "value"


def on_the_right(panel: dict[str, Any]) -> dict[str, str]:
    """refIds the panel's overrides put on a right-hand axis, with their unit."""
    found = {}
    for override in panel.get("fieldConfig", {}).get("overrides", []):
        properties = {p["id"]: p["value"] for p in override["properties"]}
        if override["matcher"]["id"] == "byFrameRefID" and properties.get("custom.axisPlacement") == "right":
            found[override["matcher"]["options"]] = properties.get("unit", "")
    return found


def draw(panels: list[dict[str, Any]], url: str, start: float, end: float, out: Path, title: str) -> int:
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels) // 8
    figure, axes = plt.subplots(rows, 2, figsize=(16, 3.2 * rows), squeeze=False)
    figure.suptitle(title, fontsize=15, x=0.01, ha="left")
    drawn = 0
    for panel in panels:
        grid = panel["gridPos"]
        ax = axes[grid["y"] // 8][0 if grid["x"] < 12 else 1]
        ax.set_title(panel["title"], fontsize=10, loc="left")
        unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "short")
        right = on_the_right(panel)
        twin = ax.twinx() if right else None
        for target in panel.get("targets", []):
            into = twin if twin is not None and target["refId"] in right else ax
            scale, suffix = (1000.0, "ms") if unit == "s" and into is ax else (1.0, "")
            for series in query_range(url, target["expr"], start, end):
                values = series["values"]
                points = [(float(t) - start, float(v)) for t, v in values if v not in ("NaN", "+Inf")]
                if not points:
                    continue
                xs, ys = zip(*points, strict=True)
                label = legend(target.get("legendFormat", ""), series["metric"])
                # One colour cycle across both axes, as Grafana gives each series its own colour.
                color = f"C{len(ax.lines) + (len(twin.lines) if twin is not None else 0)}"
                into.plot(xs, [y * scale for y in ys], label=label, color=color)
                if into is not ax:
                    into.set_ylabel(UNITS.get(right[target["refId"]], right[target["refId"]]))
                elif suffix:
                    ax.set_ylabel(suffix)
                drawn += 1
        lines = [*ax.lines, *(twin.lines if twin is not None else [])]
        if lines:
            ax.legend(handles=lines, fontsize=7, loc="upper left")
        else:
            ax.text(0.5, 0.5, "No data", ha="center", va="center", transform=ax.transAxes, color="grey")
        ax.set_xlim(0, end - start)
        ax.set_xlabel("seconds into the run", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
    figure.tight_layout(rect=(0, 0, 1, 0.98))
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=80)
    return drawn


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=DASHBOARD.with_name("dashboard.png"))
    parser.add_argument("--waves", type=int, default=4, help="waves of simulated patients")
    parser.add_argument("--patients", type=int, default=12, help="patients per wave")
    args = parser.parse_args()
    dashboard = json.loads(DASHBOARD.read_text())
    token = secrets.token_urlsafe(24)
    load = argparse.Namespace(
        patients=args.patients,
        drop_every=4,
        goaway_every=5,
        fault_after=2.0,
        speech_speed=1.0,
        deadline=180.0,
    )
    with tempfile.TemporaryDirectory(prefix="bench-dashboard-") as tmp:
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            DATA_DIR=Path(tmp) / "data",
            METRICS_TOKEN=token,
            MAX_SESSIONS=args.patients,
            MAX_SESSIONS_PER_CLIENT=args.patients,
        )
        with running_simulator(time_scale=0.1) as sim, live_server(settings, sim) as server:
            target = server.base_url.removeprefix("http://")
            with prometheus(target, token) as url:
                start = time.time()
                completed = 0
                for wave in range(args.waves):
                    outcomes = asyncio.run(run_all(server.ws_url, load))
                    done = sum(o.completed for o in outcomes)
                    completed += done
                    print(f"wave {wave + 1}/{args.waves}: {done}/{args.patients} intakes completed")
                    time.sleep(5)
                time.sleep(2 * SCRAPE_SECONDS)
                end = time.time()
                drawn = draw(dashboard["panels"], url, start, end, args.out, dashboard["title"])
    print(f"{completed} intakes over {end - start:.0f} s; {drawn} series drawn into {args.out}")


if __name__ == "__main__":
    sys.exit(main())
