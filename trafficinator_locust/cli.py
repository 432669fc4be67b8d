"""``trafficinator``: offline config checks, schema, migration, the embedded receiver and the demo.

Every command that reads a config exits 2 with one line per problem (file:line: path: message) and
no traceback when the config is wrong, and never prints a token.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any

from trafficinator_locust.core.config import Config, Target, json_schema, load_config, single_target_as_multi
from trafficinator_locust.core.errors import (
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    ConfigError,
    Problem,
    UsageError,
    describe,
)
from trafficinator_locust.core.legacy import is_legacy_environment, legacy_config, migration_yaml
from trafficinator_locust.core.table import render_table


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except UsageError as error:  # bad input: one clear message (at most 50 problems listed), no traceback
        print(describe(error), file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trafficinator", description="Realistic Matomo traffic for many Matomo instances, with Locust."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    validate = commands.add_parser(
        "validate", help="check a traffic config offline (and with --online, each target's Matomo) and show its targets"
    )
    validate.add_argument(
        "config", nargs="?", help="traffic YAML (default: $TRAFFICINATOR_CONFIG, else MATOMO_* variables)"
    )
    validate.add_argument(
        "--online",
        action="store_true",
        help="also check each enabled target: DNS, TCP, TLS, the tracker, the Reporting API, the site and the token's "
        "write access; exit 1 when one fails",
    )
    validate.add_argument(
        "--timeout",
        type=float,
        default=None,
        metavar="S",
        help="with --online: seconds per target, all its checks together (default 10)",
    )
    validate.add_argument(
        "--probe",
        action="store_true",
        help="with --online: send one test hit per target (action 'trafficinator preflight probe'); "
        "without it nothing is tracked",
    )
    validate.add_argument("--target", metavar="NAME", help="with --online: check only this target (disabled or not)")
    validate.set_defaults(handler=cmd_validate)

    schema = commands.add_parser("schema", help="print the JSON Schema of the config file (for editors)")
    schema.add_argument(
        "--markdown", action="store_true", help="print the configuration reference (docs/configuration.md) instead"
    )
    schema.set_defaults(handler=cmd_schema)

    migrate = commands.add_parser(
        "migrate", help="print the multi-target YAML equivalent of a single-target YAML or MATOMO_* variables"
    )
    migrate.add_argument(
        "config", nargs="?", help="single-target YAML; without it, read the MATOMO_* environment variables"
    )
    migrate.set_defaults(handler=cmd_migrate)

    sink = commands.add_parser("sink", help="run the embedded Matomo-compatible receiver on 127.0.0.1")
    sink.add_argument("--port", type=int, default=8765, help="0 picks a free port (see --ready-file)")
    sink.add_argument("--config", help="learn instances, sites and tokens from the targets of this traffic config")
    sink.add_argument(
        "--instance",
        action="append",
        default=None,
        help="without --config: an instance path prefix, e.g. /dev "
        "(repeatable; default: the demo's /dev, /staging, /prod)",
    )
    sink.add_argument("--sites", default="1", help="with --instance: comma-separated site ids of every instance")
    sink.add_argument("--timezone", default="UTC", help="with --instance: the sites' time zone")
    sink.add_argument(
        "--token", action="append", default=[], help="with --instance: an accepted token_auth (repeatable)"
    )
    sink.add_argument("--ready-file", help="write the bound port to this file once listening")
    sink.add_argument("--delay", type=float, default=0.0, help="seconds to wait before answering each tracking request")
    sink.add_argument(
        "--record-hits",
        action="store_true",
        help="keep each visitor's stored hits in order (stats: hit_log); for tests",
    )
    sink.add_argument(
        "--loss",
        type=float,
        default=0.0,
        help="share (0..1) of valid hits answered as stored but dropped, for `trafficinator verify` to find",
    )
    sink.add_argument("--loss-seed", type=int, default=0, help="seed of which hits --loss drops (repeatable runs)")
    sink.add_argument(
        "--fail-batches",
        type=float,
        default=0.0,
        metavar="SHARE",
        help="share (0..1) of bulk requests answered like a deadlock, 500 {status: error, tracked: 0}, "
        "storing nothing (stats: failed_batches); for testing retries",
    )
    sink.add_argument(
        "--fail-seed", type=int, default=0, help="seed of which bulk requests --fail-batches fails (repeatable runs)"
    )
    sink.add_argument(
        "--lose",
        action="append",
        default=[],
        metavar="KIND=SHARE",
        help="share (0..1) of valid hits of one kind (pageview, search, event, outlink, download, goal, order, cart, "
        "ping, product_view) answered as stored but dropped (stats: lost_by_kind), so a test proves `trafficinator "
        "verify` names the short report; repeatable",
    )
    sink.add_argument(
        "--lose-seed", type=int, default=0, metavar="N", help="seed of which hits --lose drops (repeatable runs)"
    )
    sink.add_argument(
        "--capacity",
        action="append",
        default=[],
        metavar="[PREFIX=]N",
        help="serve at most N tracked hits per second per instance (a bulk request costs its items), FIFO, answering "
        "503 once the queue is full (stats: saturated); PREFIX=N for one instance; repeatable; default: unlimited",
    )
    sink.add_argument(
        "--capacity-queue",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="with --capacity: a request that would wait longer than this for its turn is answered 503 (default 2)",
    )
    sink.set_defaults(handler=cmd_sink)

    _add_backfill(commands)
    _add_verify(commands)
    _add_profile(commands)

    demo = commands.add_parser(
        "demo", help="run Locust for ~30 s against 3 targets on the embedded receiver and print a table"
    )
    demo.add_argument("--config", default=None, help="demo traffic config (default: the packaged 3-target demo)")
    demo.add_argument("--run-time", default="30s")
    demo.add_argument("--users", type=int, default=30)
    demo.add_argument("--port", type=int, default=0, help="receiver port (default: a free port)")
    demo.set_defaults(handler=cmd_demo)
    return parser


def _load(path: str | None) -> Config:
    path = path or os.environ.get("TRAFFICINATOR_CONFIG")
    if path:
        return load_config(path)
    if is_legacy_environment(os.environ):
        return legacy_config(os.environ)
    raise ConfigError(
        [
            Problem(
                "command line",
                None,
                "",
                "give a traffic YAML file (or set TRAFFICINATOR_CONFIG, or MATOMO_URL for single-target variables)",
            )
        ]
    )


def cmd_validate(args: argparse.Namespace) -> int:
    from trafficinator_locust.ops.preflight import DEFAULT_TIMEOUT, preflight, render_results

    online_only = [
        flag
        for flag, given in (
            ("--timeout", args.timeout is not None),
            ("--probe", args.probe),
            ("--target", args.target is not None),
        )
        if given
    ]
    if online_only and not args.online:
        print(f"trafficinator validate: {', '.join(online_only)} only work(s) with --online", file=sys.stderr)
        return 2
    timeout = DEFAULT_TIMEOUT if args.timeout is None else args.timeout
    if not 0 < timeout <= 600:
        print(f"trafficinator validate: --timeout {args.timeout:g}: must be > 0 and <= 600 seconds", file=sys.stderr)
        return 2
    config = _load(args.config)
    checked = _online_targets(config, args.target) if args.online else ()
    rows = []
    for target in config.targets:
        share = f"{100 * config.weight_share(target):.1f}" if target.enabled else "-"
        per_day = "unpaced" if target.visits_per_day is None else str(target.visits_per_day)
        rows.append(
            [
                target.name,
                target.url,
                target.site_id,
                share,
                per_day,
                target.timezone,
                "yes" if target.has_token else "no",
                "yes" if target.enabled else "no",
            ]
        )
    print(
        f"{config.source}: OK, {len(config.enabled_targets)} enabled target(s), "
        f"distribution {config.distribution.value}"
    )
    print(render_table(["target", "url", "site", "weight %", "visits/day", "timezone", "token", "enabled"], rows))
    if not args.online:
        return 0
    print(flush=True)
    results = preflight(checked, timeout=timeout, probe=args.probe)
    print(render_results(results, timeout=timeout, probe=args.probe))
    return 0 if all(result.ok for result in results) else 1


def _online_targets(config: Config, name: str | None) -> tuple[Target, ...]:
    """The enabled targets, or the one named by ``--target`` (case-insensitive, enabled or not)."""
    if name is None:
        return config.enabled_targets
    found = tuple(t for t in config.targets if t.name.casefold() == name.casefold())
    if not found:
        names = ", ".join(t.name for t in config.targets)
        raise ConfigError(
            [Problem(config.source, None, "--target", f"no target named '{name}'; the config has: {names}")]
        )
    return found


def cmd_schema(args: argparse.Namespace) -> int:
    if args.markdown:
        from trafficinator_locust.core.reference import render

        print(render(), end="")
        return 0
    print(json.dumps(json_schema(), indent=2))
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    if args.config:
        print(migrate_yaml_file(args.config), end="")
        return 0
    if not is_legacy_environment(os.environ):
        raise ConfigError(
            [
                Problem(
                    "environment",
                    None,
                    "MATOMO_URL",
                    "not set; give a single-target YAML file or export the MATOMO_* variables",
                )
            ]
        )
    print(migration_yaml(os.environ), end="")
    return 0


def migrate_yaml_file(path: str) -> str:
    """A single-target YAML rewritten as multi-target YAML, ``${VAR}`` references kept as written.

    A token written in clear in the old file is replaced by ``${MATOMO_TOKEN_AUTH}``: never printed.
    """
    import yaml

    load_config(path)  # the file must be valid before it is rewritten
    with open(path, encoding="utf-8") as handle:
        raw = yaml.safe_load(handle)
    wrapped = single_target_as_multi(raw)
    if wrapped is None:
        return f"# {path} is already a multi-target config; nothing to migrate.\n"
    target = wrapped["targets"][0]
    note = ""
    token = target.get("token_auth")
    if token and not str(token).startswith("${"):
        target["token_auth"] = "${MATOMO_TOKEN_AUTH}"
        note = "# The token was written in clear in the old file: export MATOMO_TOKEN_AUTH with it instead.\n"
    header = f"# Multi-target form of {path}, written by `trafficinator migrate`.\n"
    return header + note + yaml.safe_dump(wrapped, sort_keys=False, allow_unicode=True)


def cmd_sink(args: argparse.Namespace) -> int:
    from trafficinator_locust.receiver.capacity import capacity_limits
    from trafficinator_locust.receiver.instances import (
        ReceiverInstance,
        ReceiverSite,
        default_instances,
        instances_from_targets,
    )
    from trafficinator_locust.receiver.server import run
    from trafficinator_locust.receiver.tracker import lose_shares

    if args.config:
        instances = instances_from_targets(load_config(args.config).targets, port=args.port)
    elif args.instance:
        site_ids = [int(part) for part in args.sites.split(",") if part.strip()]
        sites = {site_id: ReceiverSite(site_id, timezone=args.timezone) for site_id in site_ids}
        instances = [ReceiverInstance(prefix, dict(sites), set(args.token)) for prefix in args.instance]
    else:
        instances = default_instances()
    if not 0 <= args.loss < 1:
        print("trafficinator sink: --loss must be >= 0 and < 1 (e.g. 0.05)", file=sys.stderr)
        return 2
    if not 0 <= args.fail_batches <= 1:
        print("trafficinator sink: --fail-batches must be between 0 and 1 (e.g. 0.2)", file=sys.stderr)
        return 2
    try:
        lose = lose_shares(args.lose)
    except ValueError as error:
        print(f"trafficinator sink: --lose {error}", file=sys.stderr)
        return 2
    try:
        capacity = capacity_limits(args.capacity, [instance.prefix for instance in instances], args.capacity_queue)
    except ValueError as error:
        print(f"trafficinator sink: {error}", file=sys.stderr)
        return 2
    return (
        run(
            instances,
            host="127.0.0.1",
            port=args.port,
            ready_file=args.ready_file,
            delay_seconds=args.delay,
            loss=args.loss,
            loss_seed=args.loss_seed,
            record_hits=args.record_hits,
            fail_batches=args.fail_batches,
            fail_seed=args.fail_seed,
            lose=lose,
            lose_seed=args.lose_seed,
            capacity=capacity,
            capacity_queue=args.capacity_queue,
        )
        or 0
    )


def cmd_demo(args: argparse.Namespace) -> int:
    from trafficinator_locust.demo import run_demo

    return run_demo(config_path=args.config, run_time=args.run_time, users=args.users, port=args.port)


# --- backfill and verify -----------------------------------------------------------------------------
def _add_backfill(commands: Any) -> None:
    from trafficinator_locust.core.bulk import DEFAULT_BULK_SIZE, DEFAULT_RETRIES, DEFAULT_RETRY_DELAY
    from trafficinator_locust.ops.backfill import DEFAULT_MAX_DAYS

    parser = commands.add_parser(
        "backfill",
        help="send the planned traffic of past days (cdt + bulk requests) to every target",
        description="Send each target's planned visits for every local day of a past range, with cdt and bulk "
        "requests. Resumable (--checkpoint). See docs/backfill.md.",
    )
    parser.add_argument("config", help="traffic YAML")
    parser.add_argument(
        "--from", dest="first", required=True, type=_iso_date, metavar="YYYY-MM-DD", help="first local day"
    )
    parser.add_argument(
        "--to",
        dest="last",
        required=True,
        type=_iso_date,
        metavar="YYYY-MM-DD",
        help="last local day (at most the target's today)",
    )
    parser.add_argument(
        "--target",
        action="append",
        default=[],
        metavar="NAME",
        help="only this target (repeatable; default: every enabled target)",
    )
    parser.add_argument(
        "--max-hits-per-second", type=float, default=None, metavar="N", help="per target (default: unthrottled)"
    )
    parser.add_argument(
        "--checkpoint",
        default="backfill-checkpoint.json",
        metavar="FILE",
        help="progress file for resuming (default: %(default)s)",
    )
    parser.add_argument(
        "--report",
        default="backfill-report.json",
        metavar="FILE",
        help="JSON report per target and day, read by `trafficinator verify` (default: %(default)s)",
    )
    parser.add_argument(
        "--bulk-size",
        type=_positive_int,
        default=DEFAULT_BULK_SIZE,
        metavar="N",
        help="hits per bulk request (default: %(default)s)",
    )
    parser.add_argument(
        "--max-days",
        type=_positive_int,
        default=DEFAULT_MAX_DAYS,
        metavar="N",
        help="refuse longer ranges (default: %(default)s)",
    )
    parser.add_argument(
        "--retries",
        type=int,
        default=None,
        metavar="N",
        help="resends of a batch Matomo rolled back or did not process (a deadlock, 500, 503, connection refused), "
        "and of each single hit isolated from one that keeps failing, before giving up on it "
        f"(default: each target's bulk_retries, {DEFAULT_RETRIES})",
    )
    parser.add_argument(
        "--retry-delay",
        type=float,
        default=None,
        metavar="SECONDS",
        help="wait before the first resend, doubled for each further one, with +-50%% jitter "
        f"(default: each target's bulk_retry_delay, {DEFAULT_RETRY_DELAY:g})",
    )
    parser.add_argument(
        "--timeout", type=float, default=30.0, metavar="SECONDS", help="per request (default: %(default)s)"
    )
    parser.add_argument("--dry-run", action="store_true", help="plan and count, send nothing")
    parser.add_argument("--stop-after-batches", type=_positive_int, default=None, help=argparse.SUPPRESS)
    parser.set_defaults(handler=cmd_backfill)


def _add_verify(commands: Any) -> None:
    from trafficinator_locust.ops.verify import DEFAULT_CALLS_PER_MINUTE, DEFAULT_THRESHOLD

    parser = commands.add_parser(
        "verify",
        help="compare what a run or backfill sent with what each Matomo stored (Reporting API)",
        description="For each target, day and report of a report (visits, actions, pageviews, searches, outlinks, "
        "downloads, events, goal conversions and revenue, orders, order revenue, abandoned carts, returning visits), "
        "ask the target's Reporting API (one API.getBulkRequest per day; report_token_auth, else token_auth) what "
        "it stored. Exit 1 when a report is off by 1 - threshold or more either way, or a target failed to send.",
    )
    parser.add_argument("config", help="traffic YAML (targets, URLs, tokens)")
    parser.add_argument(
        "--report",
        required=True,
        metavar="REPORT.json",
        help="what was sent: a backfill report or a run report with per-day counts",
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=DEFAULT_THRESHOLD,
        help="a report passes when stored is within 1 - THRESHOLD of sent, both ways (default: %(default)s: "
        "one lost conversion in a hundred fails)",
    )
    parser.add_argument("--json", action="store_true", help="print the verdict as JSON instead of a table")
    parser.add_argument(
        "--calls-per-minute",
        type=float,
        default=DEFAULT_CALLS_PER_MINUTE,
        help="Reporting API calls per minute, all targets together (default: %(default)s)",
    )
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per API call (default: %(default)s)")
    parser.set_defaults(handler=cmd_verify)


def _add_profile(commands: Any) -> None:
    parser = commands.add_parser(
        "profile",
        help="print a traffic model learned from a Matomo's aggregate reports (for defaults.traffic or a target)",
        description="Read one site's aggregate reports (Reporting API, a view token is enough; never the visitor "
        "log) for a range of days and print the traffic model YAML they describe: pages with titles and weights, "
        "pageviews, dwell, channels, devices, languages, countries, returning share, searches, outlinks, "
        "downloads, events, goals, ecommerce, and the target's visits_per_day and profile as comments. "
        "The token: the target's report_token_auth or token_auth, else $MATOMO_TOKEN_AUTH. See docs/profile.md.",
    )
    parser.add_argument("config", nargs="?", help="traffic YAML holding the target (with --target)")
    parser.add_argument("--target", metavar="NAME", help="the config's target to profile")
    parser.add_argument("--url", help="without a config: the Matomo (base URL, index.php or matomo.php)")
    parser.add_argument("--site-id", type=_positive_int, metavar="N", help="with --url: the site")
    parser.add_argument("--from", dest="first", required=True, type=_iso_date, metavar="YYYY-MM-DD")
    parser.add_argument("--to", dest="last", required=True, type=_iso_date, metavar="YYYY-MM-DD")
    parser.add_argument(
        "--top",
        type=_positive_int,
        default=100,
        metavar="N",
        help="rows kept of each list: pages, referrers, keywords, links (default: %(default)s)",
    )
    parser.add_argument(
        "--anonymize-urls",
        action="store_true",
        help="replace paths, titles, referring websites, campaigns, keywords and link URLs by stable placeholders "
        "keeping sections, depth and weights",
    )
    parser.add_argument("--timeout", type=float, default=120.0, metavar="SECONDS", help="(default: %(default)s)")
    parser.set_defaults(handler=cmd_profile)


def cmd_profile(args: argparse.Namespace) -> int:
    """``trafficinator profile``: every failure is one line on stderr and exit 2, never the token."""
    from trafficinator_locust.core.errors import ReportingApiError
    from trafficinator_locust.core.learn import render_yaml
    from trafficinator_locust.ops.profile import check_range, profile_learned
    from trafficinator_locust.ops.reporting_api import ApiSite, ReportingApi

    def usage(message: str) -> int:
        print(f"trafficinator profile: {message}", file=sys.stderr)
        return EXIT_USAGE

    try:
        check_range(args.first, args.last)
    except ValueError as error:
        return usage(str(error))
    if not 0 < args.timeout <= 3600:
        return usage("--timeout must be > 0 and <= 3600 seconds")
    env_token = os.environ.get("MATOMO_TOKEN_AUTH") or None
    if args.url is not None or args.site_id is not None:
        if args.config or args.target:
            return usage("give either CONFIG --target NAME, or --url URL --site-id N, not both")
        if args.url is None or args.site_id is None:
            return usage("--url and --site-id go together")
        from trafficinator_locust.core.traffic import check_http_url

        try:
            check_http_url(args.url)
        except ValueError as error:
            return usage(f"--url {error}")
        site: Target | ApiSite = ApiSite(args.url, env_token)
        site_id, source = args.site_id, None
    else:
        if not args.config or not args.target:
            return usage("give CONFIG --target NAME (or --url URL --site-id N)")
        target = _online_targets(load_config(args.config), args.target)[0]
        site, site_id, source = target, target.site_id, f"target {target.name}"
        if not target.report_token and env_token:
            site = ApiSite(target.url, env_token)
    if not site.report_token:
        return usage(
            "no token: give the target report_token_auth or token_auth (as ${ENV_VAR}), or export MATOMO_TOKEN_AUTH "
            "(a view token is enough; never put a token on the command line)"
        )
    api = ReportingApi(site, timeout=args.timeout)
    try:
        text = render_yaml(
            profile_learned(
                api,
                site_id,
                args.first,
                args.last,
                top=args.top,
                anonymize=args.anonymize_urls,
                source=source,
            )
        )
    except ReportingApiError as error:
        return usage(api.mask(str(error)))
    print(text, end="")
    return 0


def _iso_date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a date like 2025-03-14") from None


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return number


def cmd_backfill(args: argparse.Namespace) -> int:
    """``trafficinator backfill``: config errors go to :func:`main` (exit 2); the run's own bad input too, named."""
    from trafficinator_locust.ops.backfill import BackfillOptions, run_backfill

    config = load_config(args.config)
    options = BackfillOptions(
        first=args.first,
        last=args.last,
        targets=args.target,
        max_hits_per_second=args.max_hits_per_second,
        checkpoint=Path(args.checkpoint),
        report=Path(args.report) if args.report else None,
        bulk_size=args.bulk_size,
        max_days=args.max_days,
        dry_run=args.dry_run,
        retries=args.retries,
        retry_delay=args.retry_delay,
        timeout=args.timeout,
        stop_after_batches=args.stop_after_batches,
    )
    try:
        return run_backfill(config, options)
    except UsageError as error:
        print(describe(error, "trafficinator backfill"), file=sys.stderr)
        return EXIT_USAGE


def cmd_verify(args: argparse.Namespace) -> int:
    from trafficinator_locust.ops.verify import run_verify

    config = load_config(args.config)
    try:
        return run_verify(
            config, Path(args.report), args.threshold, args.calls_per_minute, timeout=args.timeout, as_json=args.json
        )
    except UsageError as error:
        print(describe(error, "trafficinator verify"), file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
