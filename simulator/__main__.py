"""python -m simulator: serve the simulator until interrupted."""

import argparse
import signal
import sys
import threading
from types import FrameType

from simulator.options import InvalidSimulatorKey, parse_options
from simulator.scenarios import DEFAULT_SCENARIO, scenario_names
from simulator.server import SimulatorConfig, start_simulator


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--no-tls", action="store_true", help="serve plain http/ws")
    parser.add_argument("--scenario", default=DEFAULT_SCENARIO, choices=scenario_names())
    parser.add_argument("--time-scale", type=float, default=1.0, help="1.0 = real time")
    parser.add_argument(
        "--options", default="", help="default faults, as in a key: 'goaway_after=30;slow_reply=1'"
    )
    parser.add_argument(
        "--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"]
    )
    args = parser.parse_args(argv)
    try:
        options = parse_options(args.options)
    except InvalidSimulatorKey as exc:
        parser.error(str(exc))
    config = SimulatorConfig(
        host=args.host,
        port=args.port,
        tls=not args.no_tls,
        scenario=args.scenario,
        time_scale=args.time_scale,
        options=options,
        controls=True,
        log_level=args.log_level,
    )
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    with start_simulator(config) as sim:
        print(f"base_url: {sim.base_url}", flush=True)
        print(f"ca_file: {sim.ca_file or '-'}", flush=True)
        stop.wait()
    print("simulator stopped", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
