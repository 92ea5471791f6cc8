"""The `newsbot` command line. Heavy libraries are imported inside the commands that need them,
so `--help` starts instantly. A NewsbotError becomes one red line (plus its hint) and exit code 1;
`--debug` adds the traceback."""

from __future__ import annotations

import inspect
import json
import logging
import os
import sys
import time
import traceback
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager, suppress
from datetime import datetime
from functools import partial, wraps
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer
from rich.console import Console
from rich.text import Text
from typer.core import TyperGroup

from bot.errors import NewsbotError
from bot.settings import Settings, load_settings

if TYPE_CHECKING:
    from bot.core import Bot
    from bot.models import Answer, Citation, Turn
    from index.ingest import IngestReport, Progress

EXIT_FAILED = 1
EXIT_INTERRUPTED = 130
# Spinners get Text, not a str: rich reads a str as markup, loading its emoji table (~4 ms an ask).
SPINNER_TEXT = "Looking through the articles..."
_DEBUG_KEY = "newsbot.debug"


def _examples(*commands: str) -> str:
    """An epilog of example commands; click's \\b marker keeps them on their own lines."""
    return "\b\nExamples:\n" + "\n".join(f"  {command}" for command in commands)


# Consoles are made per use: each must follow whatever sys.stdout is now (tests swap it).
def _say(message: str, style: str = "", *, err: bool = False) -> None:
    """One message for people, on stdout (stderr with `err`), never wrapped mid-line."""
    Console(stderr=err).print(Text(message, style=style), soft_wrap=True)


class _NewsbotGroup(TyperGroup):
    """Turns NewsbotError (and anything unexpected) into one red line and exit code 1."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            _say("interrupted", "yellow", err=True)
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except Exception as exc:
            if type(exc).__module__.split(".")[0] in ("click", "typer"):
                raise  # usage errors, Exit and Abort: typer turns them into exit codes
            _show_error(Console(stderr=True), exc, debug=bool(ctx.meta.get(_DEBUG_KEY)))
            raise typer.Exit(EXIT_FAILED) from None


def _show_error(console: Console, exc: Exception, *, debug: bool = False) -> None:
    if isinstance(exc, NewsbotError):
        message, hint = str(exc), exc.hint
    else:
        message = f"unexpected {type(exc).__name__}: {exc}"
        hint = "this is a bug in newsbot; run again with --debug to see the traceback"
    trace = "".join(traceback.format_exception(exc)).rstrip() if debug else ""
    for line, style in ((trace, "dim"), (f"error: {message}", "bold red"), (hint, "dim")):
        if line:
            console.print(Text(line, style=style), soft_wrap=True)


app = typer.Typer(
    cls=_NewsbotGroup,
    name="newsbot",
    help="Answers questions about news articles, citing the sentences it answers from.",
    epilog=_examples(
        "newsbot ingest samples/articles",
        'newsbot ask "What did Qatar say about Hamas\'s response?"',
        "newsbot chat",
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
model_app = typer.Typer(
    help="Manage the embedding model (ONNX export).",
    no_args_is_help=True,
    rich_markup_mode=None,
    epilog=_examples("newsbot model export --precision int8"),
)
app.add_typer(model_app, name="model")


def _version(value: bool) -> None:
    if value:
        from bot import __version__

        typer.echo(f"newsbot {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    ctx: typer.Context,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks and debug logs on errors.")
    ] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    ctx.meta[_DEBUG_KEY] = debug
    _configure_logging(debug)


_handlers: list[logging.Handler] = []  # the log handlers newsbot added (none in a host's process)


def _configure_logging(debug: bool) -> None:
    root = logging.getLogger()
    if not root.handlers:  # leave a host's logging alone (e.g. tests running the app in-process)
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
        root.setLevel(logging.WARNING)
        _handlers.append(handler)
    for name in ("bot", "index"):
        logging.getLogger(name).setLevel(logging.DEBUG if debug else logging.NOTSET)


# The settings a command can take as options (`_command(settings=...)`): name -> help.
_SETTING_HELP = {
    "data_dir": "Folder for the store and models [env NEWSBOT_DATA_DIR].",
    "collection": "Chroma collection [env NEWSBOT_COLLECTION; default news].",
    "chroma_url": "Chroma server URL; unset = embedded store [env NEWSBOT_CHROMA_URL].",
    "llm": "provider:model answering with an LLM; unset = extractive [env NEWSBOT_LLM].",
}
STORE = ("data_dir", "collection", "chroma_url")
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


def _setting_option(name: str) -> Any:
    """The option --name of the setting `name`; unset (None) leaves it to the environment."""
    kind = Path if name == "data_dir" else str
    return Annotated[kind | None, typer.Option(help=_SETTING_HELP[name])]


def _command(
    *examples: str, settings: tuple[str, ...] = STORE, name: str | None = None, on: Any = app
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Registers a command on `on` with an epilog of `examples`. Typer sees the command's own
    parameters, then `settings` as options; the command gets the Settings they make. (Typer has
    no shared options, fastapi/typer#153: a callback would take them before the command's name.)"""

    def register(command: Callable[..., None]) -> Callable[..., None]:
        signature = inspect.signature(command, eval_str=True)
        own = [p for p in signature.parameters.values() if p.name != "settings"]
        added = [
            inspect.Parameter(setting, inspect.Parameter.KEYWORD_ONLY, default=None,
                              annotation=_setting_option(setting))
            for setting in settings
        ]  # fmt: skip

        @wraps(command)
        def run(**arguments: Any) -> None:
            chosen = {setting: arguments.pop(setting) for setting in settings}
            command(settings=load_settings(**chosen), **arguments)

        run.__signature__ = signature.replace(parameters=own + added)  # type: ignore[attr-defined]
        return on.command(name, epilog=_examples(*examples))(run)

    return register


def _open_bot(
    settings: Settings,
    *,
    check_identity: bool = True,
    require_articles: bool = False,
    index: bool = False,
    ingesting: bool = False,
) -> Bot:
    """The bot with its model loaded (and, to ask or `index`, the lexical index caught up) under
    a spinner. `ingesting`: a damaged store is no error here (Bot.ingest repairs it first)."""
    from bot.core import Bot
    from index.errors import DamagedIndexError

    bot = Bot.open(settings, check_identity=check_identity)
    with Console(stderr=True).status(Text("Loading the embedding model...")):
        try:
            bot.warm(index=index or require_articles, require_articles=require_articles)
        except DamagedIndexError:
            if not ingesting:
                raise
    return bot


@_command(
    "newsbot ingest samples/articles",
    "newsbot ingest 'news/*.jsonl' https://example.com/feed.xml --json",
)
def ingest(
    settings: Settings,
    sources: Annotated[
        list[str],
        typer.Argument(metavar="SOURCE", help="Files, folders, globs, URLs or RSS/Atom feeds."),
    ],
    as_json: JsonOption = False,
) -> None:
    """Read articles, chunk and embed them, and store them (only what changed)."""
    bot = _open_bot(settings, ingesting=True)
    with _progress_bar("Ingesting", enabled=not as_json) as on_progress:
        report: IngestReport = bot.ingest(sources, progress=on_progress)
    if as_json:
        typer.echo(json.dumps({**report.to_dict(), "articles": report.articles}, indent=2))
    else:
        _say(
            f"{_plural(report.articles, 'article')}: {report.new} new, {report.updated} updated, "
            f"{report.unchanged} unchanged, {report.duplicates} duplicates, {report.failed} "
            f"failed; {_plural(report.chunks, 'chunk')} written in {report.seconds:.1f} s "
            f"({report.chunks_per_second:.1f} chunks/s) into {_where(bot)}"
        )
        if report.failed:
            failed = _plural(report.failed, "item")
            _say(f"{failed} failed (listed above); everything else was ingested.", "yellow")
    if report.failed:
        raise typer.Exit(EXIT_FAILED)


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _where(bot: Bot) -> str:
    return f"{bot.store.where} (collection {bot.store.name})"


def _waiting() -> None:
    _say("Waiting for a running ingest on this store to finish…", err=True)


@contextmanager
def _progress_bar(
    label: str,
    counts: str = "{task.fields[articles]} articles, {task.fields[chunks]} chunks written",
    *,
    enabled: bool = True,
) -> Iterator[Callable[..., None]]:
    """A progress bar on stderr; yields update(**task fields), which as Bot.ingest's `progress`
    callback takes a Progress event and shows its failure."""
    from rich import progress as bar

    columns = [bar.SpinnerColumn(), bar.TextColumn("{task.description}"), bar.BarColumn()]
    columns += [bar.TextColumn(counts), bar.TimeElapsedColumn()]
    with bar.Progress(
        *columns, console=Console(stderr=True), transient=True, disable=not enabled
    ) as shown:
        task = shown.add_task(label, total=None, articles=0, chunks=0)

        def update(event: Progress | None = None, **fields: Any) -> None:
            if event is not None:
                if event.failure is not None and enabled:
                    failed = Text(f"failed: {event.failure}", style="red")
                    shown.console.print(failed, soft_wrap=True)
                fields = {"articles": event.articles_done, "chunks": event.chunks_written}
            shown.update(task, **fields)

        yield update


EveryOption = Annotated[
    str, typer.Option(metavar="DURATION", help="Time between rounds: 30s, 15m, 1h, 1h30m.")
]


@_command(
    "newsbot watch https://example.com/feed.xml --every 15m",
    "newsbot watch https://example.com/rss https://example.org/atom.xml --once",
)
def watch(
    settings: Settings,
    feeds: Annotated[
        list[str], typer.Argument(metavar="FEED_OR_URL", help="RSS/Atom feed URLs or files.")
    ],
    every: EveryOption = "15m",
    once: Annotated[bool, typer.Option("--once", help="One round, then exit.")] = False,
) -> None:
    """Poll feeds and ingest their new entries, one round every --every, until Ctrl-C."""
    import signal
    import threading

    from bot.watch import Watcher, parse_every

    seconds = parse_every(every)
    watcher = Watcher.for_bot(_open_bot(settings, ingesting=True), feeds)

    # SIGTERM raises KeyboardInterrupt too: it stops at once, even in the middle of an ingest
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    feeds_watched = _plural(len(watcher.feeds), "feed")
    _say(f"watching {feeds_watched} every {every}; Ctrl-C stops", "dim", err=True)
    try:
        watcher.run(seconds, threading.Event(), on_round=_show_round, rounds=1 if once else None)
    except KeyboardInterrupt:
        _say(f"stopped after {_plural(watcher.rounds, 'round')}", "dim", err=True)


def _show_round(result: Any) -> None:
    for down in result.down:
        _say(f"feed down: {down.feed}: {down.error} (trying again next round)", "yellow", err=True)
    _say(f"{datetime.now():%H:%M:%S} {result.line()}")


def _parse_day(value: str | None, *, end_of_day: bool = False) -> datetime | None:
    from index.dates import to_datetime

    try:
        return to_datetime(value, end_of_day=end_of_day)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date like 2024-02-07") from None


def _day_option(side: str, *, end_of_day: bool = False) -> Any:
    """--since / --until; --until is inclusive: a bare day counts whole."""
    return typer.Option(
        parser=partial(_parse_day, end_of_day=end_of_day),
        metavar="YYYY-MM-DD",
        help=f"Only articles published on or {side} this day (UTC).",
    )


@_command(
    'newsbot ask "What did Qatar say about Hamas\'s response?"',
    "newsbot ask --json --since 2024-02-01 -k 10 Who mediates between Hamas and Israel",
    "newsbot ask --json < questions.txt",
    settings=(*STORE, "llm"),
)
def ask(
    settings: Settings,
    question: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="QUESTION",
            help="The question (quotes optional). Without one, each line of stdin is a question.",
        ),
    ] = None,
    as_json: JsonOption = False,
    since: Annotated[datetime | None, _day_option("after")] = None,
    until: Annotated[datetime | None, _day_option("before", end_of_day=True)] = None,
    k: Annotated[
        int | None,
        typer.Option("-k", min=1, max=100, help="Passages to retrieve [env NEWSBOT_K; default 6]."),
    ] = None,
) -> None:
    """Answer a question from the stored articles, with numbered, quoted sources."""
    if since and until and since > until:
        raise typer.BadParameter("--since is after --until", param_hint="--since")
    text = " ".join(question or []).strip()
    if not text and sys.stdin.isatty():
        raise typer.BadParameter(
            "give a question, or pipe questions on stdin", param_hint="QUESTION"
        )
    bot = _open_bot(settings, require_articles=True)
    streaming = not as_json and bot.answerer.chat_model is not None
    lines = not text  # questions from stdin, each answered as it comes
    asked = 0
    for one in (line.strip() for line in sys.stdin if line.strip()) if lines else [text]:
        asked += 1
        console = Console()
        if lines and not as_json:
            console.print(Text(f"> {one}", style="bold"), soft_wrap=True)
        stream = bot.stream(one, since=since, until=until, k=k)
        result = show_answer(console, stream, Console(stderr=True), streaming, render=not as_json)
        if as_json:  # one answer a line for questions from stdin
            indent = None if lines else 2
            typer.echo(json.dumps(result.to_dict(), ensure_ascii=False, indent=indent))
        elif lines:
            console.print()
    if not asked:
        raise typer.BadParameter("stdin held no question", param_hint="QUESTION")


def render_answer(console: Console, answer: Answer, *, text: bool = True) -> None:
    """How a follow-up was read (so a surprising answer can be explained), the answer with its [n]
    markers highlighted, then the numbered sources."""
    from rich.padding import Padding

    from bot.models import CITATION_MARKER

    standalone = answer.standalone_question.strip()
    if standalone and standalone != answer.question.strip():
        console.print(Text(f"(understood as: {standalone})", style="dim"), soft_wrap=True)
    if text:
        body = Text(answer.text, style="yellow" if answer.refused else "")
        body.highlight_regex(CITATION_MARKER, "bold cyan")
        console.print(body)
    if answer.note:
        console.print(Text(answer.note, style="dim"), soft_wrap=True)
    if not answer.citations:
        return
    console.print()
    heading = "Closest evidence (not an answer):" if answer.refused else "Sources:"
    console.print(Text(heading, style="bold"))
    for citation in answer.citations:
        console.print(
            Text.assemble((f"[{citation.n}] ", "bold cyan"), (citation.title or "Untitled", "bold"))
        )
        details = " · ".join(filter(None, [citation.outlets, citation.date, citation.url]))
        console.print(Text(f"    {details}", style="dim"), soft_wrap=True)
        console.print(
            Padding(Text(f"“{citation.quote}”", style="italic"), (0, 0, 0, 4), expand=False)
        )


def render_passages(console: Console, answer: Answer | None) -> None:
    """The passages behind the citations, quotes highlighted, each once under all its numbers."""
    if answer is None or not answer.citations:
        console.print(Text("No sources yet: ask a question first.", style="dim"))
        return
    console.print(Text("Passages behind the last answer:", style="bold"))
    groups: dict[tuple[str, str], list[Citation]] = {}
    for citation in answer.citations:
        key = (citation.article_id, citation.passage or citation.quote)
        groups.setdefault(key, []).append(citation)
    for (_, passage_text), citations in groups.items():
        first = citations[0]
        console.print(
            Text.assemble(
                ("".join(f"[{c.n}]" for c in citations) + " ", "bold cyan"),
                (first.title or "Untitled", "bold"),
                (f"  {first.outlets} · {first.date}", "dim"),
            ),
            soft_wrap=True,
        )
        passage = Text(passage_text)
        passage.highlight_words([c.quote for c in citations], "bold yellow")
        console.print(passage)
        if first.url:
            console.print(Text(first.url, style="dim"), soft_wrap=True)
        console.print()


CHAT_HELP = """Ask a question; follow-ups ("What about Egypt?") use the conversation so far.
  /sources   the full passages behind the last answer
  /reset     forget the conversation
  /help      this help
  /quit      leave (or Ctrl-D); Ctrl-C cancels an answer in progress"""


def show_answer(
    console: Console,
    stream: Generator[str | Answer, None, None],
    spinner: Console,
    streaming: bool,
    *,
    render: bool = True,
) -> Answer:
    """Print the answer's pieces as they arrive (when `streaming`), a spinner until the first;
    then (`render`) how a follow-up was read, the rest of the answer and its sources."""
    from bot.models import Answer

    result: Answer | None = None
    shown: list[str] = []
    try:
        with spinner.status(Text(SPINNER_TEXT)) as status:
            for item in stream:
                if isinstance(item, Answer):
                    result = item
                elif streaming and item:
                    if not shown:
                        status.stop()
                    shown.append(item)
                    # out(), not print(): a piece is part of a line; don't wrap it alone.
                    console.out(item, end="", highlight=False)
    finally:
        stream.close()  # Ctrl-C: let the answerer clean up (e.g. an LLM request)
    assert result is not None  # Bot.stream ends with the Answer, or raises
    whole = bool(shown) and "".join(shown).strip() == result.text.strip()
    if shown:  # end the streamed line; one cut short by a failure says so (the answer follows)
        console.print("" if whole else Text(" [cut off]", style="dim"))
    if render:
        render_answer(console, result, text=not whole)
    return result


class ChatSession:
    """One conversation: the turns so far and the last answer (for /sources)."""

    def __init__(self, bot: Bot, console: Console) -> None:
        self.bot = bot
        self.console = console
        self.history: list[Turn] = []
        self.last: Answer | None = None
        self.streaming = bot.answerer.chat_model is not None

    def handle(self, line: str) -> bool:
        """Handle one input line; False when the user asked to leave."""
        line = line.strip()
        if not line:
            return True
        if line.startswith("/"):
            return self.command(line)
        try:
            self.answer(line)
        except KeyboardInterrupt:
            self.console.print(Text("(cancelled)", style="dim"))
        except NewsbotError as exc:
            _show_error(self.console, exc)
        return True

    def command(self, line: str) -> bool:
        name = line.split()[0].lower()
        if name in ("/quit", "/exit", "/q"):
            return False
        if name == "/sources":
            render_passages(self.console, self.last)
        elif name == "/reset":
            self.history.clear()
            self.last = None
            self.console.print(Text("Conversation forgotten.", style="dim"))
        elif name in ("/help", "/?"):
            self.console.print(Text(CHAT_HELP))
        else:
            self.console.print(Text(f"unknown command {name}; /help lists them", style="yellow"))
        return True

    def answer(self, question: str) -> None:
        from bot.models import Turn

        stream = self.bot.stream(question, history=list(self.history))
        result = show_answer(self.console, stream, self.console, self.streaming)
        self.console.print()
        self.last = result
        self.history.append(
            Turn(result.question, result.text, result.standalone_question or result.question)
        )


def _interactive_lines(history_file: Path) -> Iterator[str]:
    from prompt_toolkit import PromptSession
    from prompt_toolkit.history import FileHistory

    history_file.parent.mkdir(parents=True, exist_ok=True)
    session: PromptSession[str] = PromptSession(history=FileHistory(str(history_file)))
    while True:
        try:
            yield session.prompt("you> ")
        except KeyboardInterrupt:
            continue  # Ctrl-C at the prompt clears the line, as in a shell
        except EOFError:
            return


@_command("newsbot chat", "newsbot chat --llm openai:gpt-4o-mini", settings=(*STORE, "llm"))
def chat(settings: Settings) -> None:
    """Talk with the bot: follow-up questions, /sources, /reset, /help, /quit (Ctrl-D)."""
    bot = _open_bot(settings, require_articles=True)
    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    if interactive:
        articles = _plural(bot.stats()["articles"], "article")
        _say(
            f"newsbot: {articles} indexed. Ask a question; /help for commands, Ctrl-D to leave.",
            "dim",
        )
    session = ChatSession(bot, Console())
    lines = (
        _interactive_lines(settings.data_dir / "chat_history")
        if interactive
        else (line.rstrip("\n") for line in sys.stdin)
    )
    for line in lines:
        if not session.handle(line):
            break


@_command("newsbot stats", "newsbot stats --json")
def stats(settings: Settings, as_json: JsonOption = False) -> None:
    """Show the store: location, collection, articles, chunks, embedding model."""
    from rich.table import Table

    from bot.core import Bot

    figures = Bot.open(settings).stats()  # no model
    if as_json:
        typer.echo(json.dumps(figures, indent=2))
        return
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for name in ("store", "collection", "articles", "chunks"):
        table.add_row(name, str(figures[name]))  # type: ignore[literal-required]
    embedding = figures.get("embedding") or {}
    table.add_row(
        "embedding",
        f"{embedding['embedding_model']} ({embedding['embedding_dimension']} dimensions, "
        f"{embedding['embedding_backend']}, {embedding['embedding_precision']})"
        if embedding
        else "none yet (nothing ingested)",
    )
    Console().print(table)


@_command("newsbot reset", "newsbot reset --yes --collection scratch")
def reset(
    settings: Settings,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete every article and chunk of the collection."""
    from bot.core import Bot
    from index.errors import DamagedIndexError

    bot = Bot.open(settings)  # deleting needs no model
    try:
        figures = bot.stats()
        articles = _plural(figures["articles"], "article")
        what = f"{articles} and {_plural(figures['chunks'], 'chunk')}"
    except DamagedIndexError:  # not counted, but may be deleted
        articles = what = "every article and chunk"
    question = f"Delete {what} from {_where(bot)}?"
    if not yes and not typer.confirm(question, default=False):
        _say("Nothing deleted.", "yellow")
        raise typer.Exit(EXIT_FAILED)
    bot.reset(on_wait=_waiting)
    _say(f"Deleted {articles} from {_where(bot)}.")


@_command("NEWSBOT_EMBEDDING_BACKEND=onnx newsbot reindex")
def reindex(settings: Settings) -> None:
    """Re-embed every stored chunk with the current embedding settings (no re-reading)."""
    # The store may hold vectors of another model or precision: that is what reindex is for.
    bot = _open_bot(settings, check_identity=False)
    started = time.perf_counter()
    with _progress_bar("Re-embedding", "{task.fields[chunks]} chunks re-embedded") as on_progress:
        count = bot.reindex(progress=on_progress)
    seconds = time.perf_counter() - started
    identity = bot.embedder.identity  # what the store records now
    how = f"{identity.model} ({identity.backend}, {identity.precision})"
    _say(f"Re-embedded {_plural(count, 'chunk')} with {how} in {seconds:.1f} s.")


@_command("newsbot repair")
def repair(settings: Settings) -> None:
    """Rebuild a vector index a stopped process left damaged (re-embeds the chunks if needed)."""
    from bot.core import Bot

    bot = Bot.open(settings, check_identity=False)  # Bot.repair decides what it may keep
    started = time.perf_counter()
    with _progress_bar("Checking the store", "{task.completed} records") as update:
        rebuilt = bot.repair(
            progress=lambda name, done: update(description=f"Rebuilding {name}", completed=done),
            on_wait=_waiting,
        )
    if not rebuilt:
        _say(f"Nothing to repair in {_where(bot)}.")
        return
    done = ", ".join(f"{name} ({_plural(count, 'record')})" for name, count in rebuilt.items())
    _say(f"Rebuilt the vector index of {done} in {time.perf_counter() - started:.1f} s.")


@_command(
    "newsbot model export --precision int8", settings=("data_dir",), name="export", on=model_app
)
def model_export(
    settings: Settings,
    precision: Annotated[
        Literal["fp32", "int8"] | None,
        typer.Option(help="fp32 or int8 [env NEWSBOT_EMBEDDING_PRECISION; default fp32]."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Rebuild even a valid export.")] = False,
) -> None:
    """Export the embedding model to ONNX (checked against the original) and print its path."""
    from index.onnx_backend import export_model

    chosen = precision or settings.embedding_precision
    exporting = f"Exporting {settings.embedding_model} to ONNX ({chosen})..."
    with Console(stderr=True).status(Text(exporting)):
        path = export_model(settings.embedding_model, chosen, settings.model_cache_dir, force=force)
    typer.echo(str(path))


@_command(
    "NEWSBOT_SLACK_BOT_TOKEN=xoxb-... NEWSBOT_SLACK_APP_TOKEN=xapp-... newsbot slack",
    "NEWSBOT_SLACK_SIGNING_SECRET=... newsbot slack --http --port 3000",
    settings=(*STORE, "llm"),
)
def slack(
    settings: Settings,
    socket: Annotated[
        bool,
        typer.Option(
            "--socket/--http",
            help="Socket Mode (needs an app token) or an HTTP server for Events API requests.",
        ),
    ] = True,
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port of the HTTP server.")] = 3000,
    host: Annotated[
        str, typer.Option(help="Address the HTTP server listens on (0.0.0.0: all).")
    ] = "127.0.0.1",
    watch_file: Annotated[
        Path | None,
        typer.Option(
            "--watch", metavar="FILE", help="Also watch the feeds FILE lists, one a line."
        ),
    ] = None,
    every: EveryOption = "15m",
) -> None:
    """Answer questions in Slack (mentions, DMs and /newsbot)."""
    import bot.slack
    from bot.watch import Watcher, parse_every, read_feed_list

    # missing tokens: fail before the model loads
    settings = bot.slack.slack_settings(settings, socket=socket)
    secrets = (settings.slack_bot_token, settings.slack_app_token, settings.slack_signing_secret)
    for handler in _handlers:
        handler.addFilter(bot.slack.RedactSecrets(secrets))
    feeds = read_feed_list(watch_file) if watch_file else []
    seconds = parse_every(every)
    newsbot = _open_bot(settings, index=True)  # the one warm: serve() leaves it to its caller
    watching = Watcher.for_bot(newsbot, feeds).start(seconds, _show_round) if feeds else None
    try:
        bot.slack.serve(newsbot, socket=socket, port=port, host=host)
    finally:
        if watching is not None:
            watching.set()


@_command(
    "newsbot eval multihop_dev.jsonl --retriever dense --retriever hybrid --limit 50",
    "newsbot eval rgb_dev.jsonl --json-out rgb.json",
    "newsbot eval samples/questions/questions.jsonl",
    settings=("data_dir", "llm"),
    name="eval",
)
def evaluate(
    settings: Settings,
    dataset: Annotated[
        Path,
        typer.Argument(
            help="Questions file: MultiHop (multihop_dev.jsonl), RGB (rgb_dev.jsonl) or a set of "
            "our own (samples/questions/questions.jsonl: answers per kind)."
        ),
    ],
    retriever: Annotated[
        list[str] | None,
        typer.Option(help="dense, lexical or hybrid; repeat to compare (default hybrid)."),
    ] = None,
    limit: Annotated[
        int | None, typer.Option(min=1, help="At most N questions (MultiHop: N across types).")
    ] = None,
    corpus: Annotated[
        Path | None,
        typer.Option(
            help="Articles of a MultiHop set or a question set (default: beside DATASET)."
        ),
    ] = None,
    json_out: Annotated[Path | None, typer.Option(help="Also write the full report here.")] = None,
    retrieval_only: Annotated[
        bool, typer.Option("--retrieval-only", help="Score retrieval only (quick; MultiHop).")
    ] = False,
) -> None:
    """Measure retrieval and answer quality on a question set (in a throwaway store)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from bot.evaluate import rich_tables, run_eval

    columns = ("{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        tasks: dict[str, Any] = {}

        def on_progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        report = run_eval(
            dataset,
            settings=settings,
            retrievers=retriever or ["hybrid"],
            limit=limit,
            corpus=corpus,
            progress=on_progress,
            answer=not retrieval_only,
        )
    if json_out is not None:
        text = json.dumps(report.to_dict(), indent=2, ensure_ascii=False)
        json_out.write_text(text + "\n", encoding="utf-8")
    console = Console()
    if not console.is_terminal:  # a file or a pipe: keep whole figures rather than wrap columns
        console.width = max(console.width, 200)
    for table in rich_tables(report):
        console.print(table)
    backend = report.embedding.get("embedding_backend", "?")
    precision = report.embedding.get("embedding_precision", "")
    written = f"; full report in {json_out}" if json_out else ""
    took = f"{report.questions} questions, {report.seconds:.0f} s"
    _say(f"{took}; embedding {backend} {precision}{written}", "dim")


def main() -> None:
    """The command line, in this process (ends in SystemExit, with the exit code)."""
    app(prog_name="newsbot")


def console_script() -> None:
    """The `newsbot` script: `main`, then exit without the interpreter's teardown (0.2-0.3 s
    CPU after an ask: docs/benchmarks.md, "Cold start"), as mypy does; output is flushed here,
    Chroma and the lexical index commit as they write."""
    try:
        main()
        code: int | str | None = 0
    except SystemExit as stop:
        code = stop.code
    with suppress(OSError):  # a closed pipe (`newsbot ask ... | head -1`)
        sys.stdout.flush()
        sys.stderr.flush()
    logging.shutdown()
    os._exit(code if isinstance(code, int) else 1 if code else 0)


if __name__ == "__main__":
    console_script()
