"""``storyline``: the command line. The only place that exits the process.

Exit codes: 0 success; 1 failure (or, for ``ingest``, some input was rejected; or a
database that ``init`` has not set up); 2 usage or configuration error (naming the
dotted key); 3 another daemon holds the database.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import click

from adapters.normalize import http_url_problem
from daemon import config as config_module
from daemon import log as log_setup
from daemon.config import SourceEntry
from daemon.errors import AlreadyRunning, ConfigError, StorylineError, UserError
from daemon.files import is_ignored
from daemon.service import Daemon, Services, file_settings, open_engine, tune_gc, utc_now
from daemon.status import recent_checks, source_rows
from storage.errors import StoreError

EXIT_FAILURE, EXIT_USAGE, EXIT_LOCKED = 1, 2, 3


def main() -> NoReturn:
    try:
        code = cli.main(standalone_mode=False, prog_name="storyline")
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        sys.exit(EXIT_FAILURE)
    except click.ClickException as exc:
        exc.show()
        sys.exit(EXIT_USAGE)
    except ConfigError as exc:
        _fail(f"configuration error: {exc}", EXIT_USAGE)
    except UserError as exc:
        _fail(str(exc), EXIT_USAGE)
    except AlreadyRunning as exc:
        _fail(str(exc), EXIT_LOCKED)
    except (StorylineError, StoreError) as exc:
        _fail(str(exc), EXIT_FAILURE)
    # without standalone mode, click returns a command's Exit code instead of raising it
    sys.exit(code if isinstance(code, int) else 0)


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"storyline: {message}", err=True)
    sys.exit(code)


class Context:
    def __init__(self, config_path: Path) -> None:
        self.config_path = config_path
        self._settings: config_module.Settings | None = None

    @property
    def settings(self) -> config_module.Settings:
        if self._settings is None:
            self._settings = config_module.load(self.config_path)
            log_setup.configure(self._settings.log.level, self._settings.log.format)
        return self._settings

    @contextmanager
    def services(self, *, prepare: bool = False, bulk: bool = False) -> Iterator[Services]:
        """The services on a database that ``storyline init`` has set up, or with
        ``prepare`` one it sets up (folders and schema) first; ``bulk`` for commands that
        may handle many events (the collector settings of the daemon, see ``tune_gc``;
        not worth their 20 ms of start-up for a query)."""
        services = Services(self.settings)
        if bulk:
            tune_gc()
        try:
            if prepare:
                services.prepare()
            else:
                services.require_schema()
            yield services
        finally:
            services.close()


pass_context = click.make_pass_decorator(Context)


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        """A reader that stopped reading (``storyline show X | head -1``) is not a
        failure: exit 0 quietly (click itself would exit 1)."""
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            # what is still buffered goes nowhere, and not into a traceback at exit
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
            raise click.exceptions.Exit(0) from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="STORYLINE_CONFIG",
    default="config.toml",
    show_default=True,
    help="The configuration file (also STORYLINE_CONFIG).",
)
@click.version_option(package_name="storyline")
@click.pass_context
def cli(ctx: click.Context, config_path: Path) -> None:
    """storyline keeps every version of the news: an event-sourced ingestion daemon."""
    ctx.obj = Context(config_path)


@cli.command()
@pass_context
def init(ctx: Context) -> None:
    """Create the folders and the database schema (safe to run again)."""
    with ctx.services(prepare=True):
        pass  # setting up is all there is to do
    s = ctx.settings
    click.echo(f"database: {s.database_url}")
    for label, path in (
        ("inbox", s.inbox_dir),
        ("archive", s.archive_dir),
        ("rejected", s.rejected_dir),
    ):
        click.echo(f"{label}: {path}")


@cli.command()
@pass_context
def run(ctx: Context) -> None:
    """Run the daemon in the foreground until SIGTERM or Ctrl-C."""
    daemon = Daemon(ctx.settings, config_path=ctx.config_path)
    tune_gc()
    daemon.install_signal_handlers()
    daemon.run()


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@pass_context
def ingest(ctx: Context, paths: tuple[Path, ...]) -> None:
    """Ingest files once through the same pipeline, then exit.

    A folder stands for every file under it, in subfolders too, except dot-names and
    temporary names (as in the inbox). Files outside the inbox stay where they are.
    Exit code 1 if any was rejected.
    """
    files = list(_expand(paths))
    with ctx.services(prepare=True, bulk=True) as services:
        from daemon.files import FileIngestor

        ingestor = FileIngestor(
            file_settings(ctx.settings, keep_in_place=True),
            services.store,
            clock=services.store._clock,
        )
        report = ingestor.ingest(files)
        services.projector.catch_up()
    click.echo(
        f"{report.files} files: {report.new} new, {report.revised} revised, "
        f"{report.unchanged} unchanged, {report.rejected} rejected"
    )
    if report.rejected:
        raise click.exceptions.Exit(EXIT_FAILURE)


def _expand(paths: tuple[Path, ...]) -> Iterator[Path]:
    """Each path given; for a folder, every file under it, in its subfolders too,
    leaving out the names the inbox ignores (dot-names such as .git, *.tmp and the
    like) and all that is under them. Symbolic links to folders are not followed."""
    for path in paths:
        if path.is_dir() and not path.is_symlink():
            found = []
            for root, folders, files in os.walk(path.absolute()):
                folders[:] = [name for name in folders if not is_ignored(name)]
                found += [Path(root, name) for name in files if not is_ignored(name)]
            yield from sorted(p for p in found if p.is_file())
        else:
            yield path.absolute()


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@pass_context
def status(ctx: Context, as_json: bool) -> None:
    """Counts, projection lag, inbox backlog and the latest events."""
    from daemon.status import collect, render

    with ctx.services() as services:
        report = collect(services)
    click.echo(json.dumps(report, indent=2, default=str) if as_json else render(report))


@cli.command()
@click.argument("article")
@pass_context
def history(ctx: Context, article: str) -> None:
    """Every version of ARTICLE (an article id, key or URL, or the id, name or URL of the
    page or changelog source that tracks it): time, kind, title."""
    head, versions = _history(ctx, article)
    click.echo(f"{head['title']}\n  id {head['article_id']}  key {head['article_key']}")
    for v in versions:
        seen = (
            f"  (tracker {v['source_version']} at {v['source_observed_at']})"
            if v["source_version"]
            else ""
        )
        click.echo(
            f"  v{v['version']:<3} {v['observed_at']}  {v['kind']:<11} "
            f"{v['channel']:<9} {v['source_id']:<17} {v['title']}{seen}"
        )


@cli.command()
@click.argument("article")
@click.argument("versions", nargs=-1, type=int)
@pass_context
def diff(ctx: Context, article: str, versions: tuple[int, ...]) -> None:
    """Word-level diff of ARTICLE between versions A and B (default: the last two; an
    article with only one version says so, and exits 0)."""
    from daemon.reading import render_diff, version_text, word_diff

    head, found = _history(ctx, article)
    numbers = [v["version"] for v in found]
    if len(versions) not in (0, 2):
        raise UserError("give two version numbers, or none for the last two")
    if not versions and len(numbers) == 1:
        click.echo(f"{head['title']!r} has only one version (v{numbers[0]}): nothing to compare")
        return
    a, b = versions or (numbers[-2], numbers[-1])
    by_number = {v["version"]: v for v in found}
    for n in (a, b):
        if n not in by_number:
            raise UserError(f"{head['title']!r} has no version {n} (it has 1 to {numbers[-1]})")
    old, new = by_number[a], by_number[b]
    click.echo(
        f"v{a} ({old['observed_at']}, {old['channel']}) -> "
        f"v{b} ({new['observed_at']}, {new['channel']}, {new['kind']})"
    )
    pieces = list(word_diff(version_text(old), version_text(new)))
    click.echo(render_diff(pieces, colour=sys.stdout.isatty()))


@cli.command()
@click.argument("article")
@click.option("--as-of", "moment", help="An ISO-8601 time; the text as it stood then.")
@pass_context
def show(ctx: Context, article: str, moment: str | None) -> None:
    """The text of ARTICLE, now or as it stood at --as-of TIME."""
    from daemon.reading import as_of, version_text
    from storage.events import from_iso

    head, found = _history(ctx, article)
    # the version current now: a tracker's history imported late has higher numbers
    version = next((v for v in found if v["valid_to"] is None), found[-1])
    if moment:
        try:
            when = from_iso(moment)
        except ValueError:
            raise UserError(f"--as-of {moment!r} is not an ISO-8601 time") from None
        picked = as_of(found, when)
        if picked is None:
            raise UserError(f"{head['title']!r} had no version yet at {moment}")
        version = picked
    click.echo(
        f"# v{version['version']} of {len(found)}, valid from {version['valid_from']}"
        f" ({version['channel']}, {version['kind']})"
    )
    click.echo(version_text(version))


def _history(ctx: Context, article: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    from daemon.status import article_history

    with ctx.services() as services:
        found = article_history(services, article)
    if found is None or not found[1]:
        raise UserError(
            f"no article matches {article!r} (give an article id, key or URL, or the id, "
            "name or URL of a page or changelog source)"
        )
    return found


@cli.command()
@click.argument("projection", required=False)
@pass_context
def rebuild(ctx: Context, projection: str | None) -> None:
    """Empty a projection (or all) and replay the whole event log into it."""
    from rich.progress import Progress

    with ctx.services(prepare=True, bulk=True) as services:
        runner = services.projector
        if projection and projection not in runner.projections:
            known = ", ".join(runner.projections)
            raise UserError(f"unknown projection {projection!r}; known: {known}")
        with Progress(transient=True, disable=not sys.stderr.isatty()) as bar:
            task = bar.add_task("replaying", total=None)
            count = runner.rebuild(
                projection, progress=lambda at, head: bar.update(task, completed=at, total=head)
            )
    click.echo(f"rebuilt {projection or 'all projections'} from {count} events")


@cli.group()
def sources() -> None:
    """Add, list, show, remove and resume polled sources."""


@sources.command("add")
@click.argument("url")
@click.option(
    "--kind",
    type=click.Choice(["feed", "changelog", "page"]),
    default="feed",
    show_default=True,
    help="What the URL serves.",
)
@click.option("--name", help="A label for the source.")
@pass_context
def sources_add(ctx: Context, url: str, kind: str, name: str | None) -> None:
    """Add a source by URL (a source.added event); it is checked at the next poll."""
    problem = http_url_problem(url)
    if problem:  # before the database is opened (and perhaps set up)
        raise UserError(f"source URL {url!r} {problem}")
    with ctx.services(prepare=True) as services:
        sid = services.registry.add(
            SourceEntry(kind=kind, url=url, name=name), origin="cli", now=utc_now()
        )
    click.echo(sid)


@sources.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def sources_list(ctx: Context, as_json: bool) -> None:
    """Every source with its state."""
    with ctx.services() as services:
        rows = source_rows(services)
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    for r in rows:
        click.echo(
            f"{r['source_id']}  {r['kind']:<9} {r['status']:<16} "
            f"next {r['next_check_at'] or '-'}  {r['name'] or ''} {r['url']}"
        )


@sources.command("show")
@click.argument("source")
@pass_context
def sources_show(ctx: Context, source: str) -> None:
    """One source (by id, URL or name): state and its latest checks."""
    with ctx.services() as services:
        sid = services.registry.resolve(source)["source_id"]
        row = next(r for r in source_rows(services) if r["source_id"] == sid)
        checks = recent_checks(services, sid)
    for key, value in row.items():
        click.echo(f"{key:<22} {'-' if value is None else value}")
    click.echo("latest checks:")
    for c in checks:
        click.echo(
            f"  {c['checked_at']}  {c['outcome']:<12} {c['http_status'] or '-':<4} "
            f"{c['bytes']:>8} B {c['duration_ms']:>6} ms  {c['error'] or ''}"
        )


@sources.command("remove")
@click.argument("source")
@pass_context
def sources_remove(ctx: Context, source: str) -> None:
    """Stop polling a source (a source.removed event); its articles stay."""
    with ctx.services() as services:
        click.echo(services.registry.remove(source))


@sources.command("resume")
@click.argument("source")
@pass_context
def sources_resume(ctx: Context, source: str) -> None:
    """Make a backing-off, gone or tracking-stopped source active and due now (a
    removed one is added again with `sources add`)."""
    with ctx.services() as services:
        click.echo(services.registry.resume(source, utc_now()))


@cli.command()
@click.option("--once", is_flag=True, required=True, help="Run one cycle and exit.")
@click.option("--all", "all_sources", is_flag=True, help="Check every source, due or not.")
@pass_context
def poll(ctx: Context, once: bool, all_sources: bool) -> None:
    """Check due sources once (for cron and tests), then exit."""
    with ctx.services(prepare=True, bulk=True) as services:
        services.registry.reconcile(ctx.settings.sources, utc_now())
        report = services.poller.run_cycle(all_sources=all_sources)
        if report.unprojected:
            services.projector.catch_up()
    counts = ", ".join(f"{n} {k}" for k, n in sorted(report.outcomes.items())) or "none due"
    click.echo(f"checked {report.checked} sources: {counts}; {report.events} events")


@cli.command("check-config")
@pass_context
def check_config(ctx: Context) -> None:
    """Validate the configuration and print the effective settings (the database's
    driver is loaded, but the database is not opened)."""
    settings = ctx.settings
    open_engine(settings).dispose()
    effective: dict[str, Any] = config_module.as_dict(settings)
    effective["storage"]["url"] = settings.database_url
    for section, values in effective.items():
        click.echo(f"[{section}]")
        for key, value in values.items():
            click.echo(f"{key} = {json.dumps(value)}")
        click.echo("")
    click.echo(f"# {ctx.config_path}: ok", err=True)


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
