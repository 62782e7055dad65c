"""loadtest's fields in the start form of Locust's web UI ("Custom parameters"), and the check of a start.

Locust builds the form from `template_args["extra_options"]`, one entry per option keyed by its
`dest`, and labels each field "<key, title-cased> (<help>)": `Nlx Channel (NLX channel key with ...)`,
cut where the line ends. It posts each field under its key turned to snake_case, unless the key starts
with a capital letter, and its own `/swarm` handler converts the values it knows with the type of the
value they replace (`float("")` for a cleared number field) and ignores the others.

So loadtest's entries are keyed by their label (`options.Option.label`, "NLX channel key"), which the
form shows as written and posts unchanged, with a short hint as help, in the order of `options.OPTIONS`.
A start is checked before Locust sees it: the posted values are read as the command line reads them
(an empty field is the option's default), every setting is built with `settings.from_options`, and
only then are they stored in `parsed_options`, which the test-start handler reads
(`plugin.Loadtest.refresh_settings`) and a master sends its workers. A bad value refuses the start
with Locust's own answer, `{"success": false, "message": ...}`, which the form shows under its button.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Mapping
from typing import Any

from flask import Response, jsonify, request
from werkzeug.datastructures import ImmutableMultiDict

from loadtest.errors import ConfigError, LoadtestError
from loadtest.options import OPTIONS, Option
from loadtest.settings import Plays, check_reachable, from_options

logger = logging.getLogger("loadtest")

# Locust's endpoint of the start form's POST (blueprint "locust", view `swarm`).
SWARM_ENDPOINT = "locust.swarm"
FORM_OPTIONS = tuple(option for option in OPTIONS if not option.not_in_form)
# A start may post an option under its label (the form) or its dest (scripts, as Locust documents).
BY_KEY: dict[str, Option[Any]] = {
    **{option.dest: option for option in OPTIONS},
    **{option.label: option for option in OPTIONS},
}
# Locust's runner states while a test runs (locust.runners.STATE_SPAWNING, STATE_RUNNING).
RUNNING_STATES = ("spawning", "running")
_INSTALLED_ATTR = "_loadtest_start_form"

MockUrl = Callable[[], str | None]


# -- what the form shows -------------------------------------------------------------------------------


def shown(option: Option[Any], value: Any) -> str | bool:
    """A value as the form shows it, and as a start posts it back."""
    if option.kind == "store_true":
        return bool(value)
    if value is None:
        return ""
    if option.kind == "append":
        # One text field for a repeatable option: its rules `;`-separated, as in its environment variable.
        return ";".join([value] if isinstance(value, str) else [str(item) for item in value])
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def form_entry(option: Option[Any], value: Any) -> dict[str, Any]:
    """One field of Locust's "Custom parameters", as `locust.argument_parser.ui_extra_args_dict` has it."""
    return {
        "default_value": shown(option, value),
        "is_secret": False,
        "is_required": False,
        "help_text": option.hint,
        "is_multiple": False,
        "choices": list(option.choices) or None,
    }


def extra_options(options: Any, locust_entries: Mapping[str, Any]) -> dict[str, Any]:
    """The form's custom fields: loadtest's, in the order of OPTIONS, keyed by label and showing the value
    the next run would use (the last run's, like Locust's users and spawn rate); then any other
    plugin's, as Locust built them."""
    ours = {option.label: form_entry(option, getattr(options, option.dest, None)) for option in FORM_OPTIONS}
    dests = {option.dest for option in OPTIONS}
    return {**ours, **{key: entry for key, entry in locust_entries.items() if key not in dests}}


# -- what a start posts --------------------------------------------------------------------------------


def from_form(option: Option[Any], text: str) -> Any:
    """A posted field's value as argparse stores the flag's: empty is not given (the default)."""
    if option.kind == "store_true":
        if text not in ("true", "false", ""):
            raise ConfigError(f"{option.flag} {text!r} must be true or false")
        return text == "true"
    if text == "":
        return option.default
    if option.kind == "append":
        return [text]  # `;`-separated rules: thresholds.parse_all splits them
    if option.number:
        try:
            return float(text)
        except ValueError:
            return option.parse(text)  # raises the option's one-line ConfigError
    return text


def posted_values(form: Mapping[str, str]) -> dict[str, Any]:
    """loadtest's options among a start's fields, by dest, as argparse would store them."""
    return {BY_KEY[key].dest: from_form(BY_KEY[key], text) for key, text in form.items() if key in BY_KEY}


def checked_values(
    options: Any,
    form: Mapping[str, str],
    host: str,
    *,
    current_host: str | None,
    mock_url: str | None,
    running: bool,
    plays: Plays | None = None,
) -> dict[str, Any]:
    """The options a start from the form runs with, by dest, once every setting they make is valid;
    ConfigError (one line, naming the fix) when one is not."""
    values = posted_values(form)
    changed = [BY_KEY[dest] for dest, value in values.items() if _differs(BY_KEY[dest], value, options)]
    for option in changed:
        if option.not_in_form:
            raise ConfigError(option.not_in_form)
    if running and changed:
        names = ", ".join(option.label for option in changed)
        raise ConfigError(f"{names}: loadtest's options apply from the next start: stop the test first")
    if mock_url is not None and host.rstrip("/") != mock_url.rstrip("/"):
        # The mock's key and defaults would go to that host: a real one needs its own key and options.
        raise ConfigError(
            f"--host {host!r}: this locust runs against its built-in mock ({mock_url}); "
            "to test another host, restart locust with --host"
        )
    candidate = argparse.Namespace(**{**vars(options), **values})
    settings = from_options(candidate, host, uses_mock=mock_url is not None, plays=plays or Plays())
    if mock_url is None and host != current_host:
        # As at start-up: a wrong host stops here with one line, not with every turn failing.
        check_reachable(host, settings.connect_timeout)
    return values


def _differs(option: Option[Any], value: Any, options: Any) -> bool:
    return shown(option, value) != shown(option, getattr(options, option.dest, None))


# -- wiring into Locust's web UI -----------------------------------------------------------------------


class StartForm:
    """The form's fields and the check of each start, on one Locust web UI."""

    def __init__(self, web_ui: Any, mock_url: MockUrl) -> None:
        self.web_ui = web_ui
        self.mock_url = mock_url

    def update_template_args(self, locust_update: Callable[[], None]) -> Callable[[], None]:
        def update() -> None:
            locust_update()
            args = self.web_ui.template_args
            options = self.web_ui.environment.parsed_options
            args["extra_options"] = extra_options(options, args.get("extra_options") or {})

        return update

    def swarm(self, locust_swarm: Callable[[], Response]) -> Callable[[], Response]:
        def swarm() -> Response:
            environment = self.web_ui.environment
            options = environment.parsed_options
            if options is None:
                return locust_swarm()
            # As Locust's handler sets it from the form's field.
            host = str(request.form.get("host", environment.host or "")).replace("<", "").replace(">", "")
            running = getattr(environment.runner, "state", None) in RUNNING_STATES
            try:
                values = checked_values(
                    options,
                    request.form,
                    host,
                    current_host=environment.host,
                    mock_url=self.mock_url(),
                    running=running,
                    # What the users play: a locustfile of flows only needs no conversations file.
                    plays=getattr(getattr(environment, "loadtest", None), "plays", None),
                )
            except LoadtestError as exc:
                logger.error("loadtest: the test did not start: %s", exc)
                return jsonify(success=False, message=str(exc), host=environment.host)
            for dest, value in values.items():
                setattr(options, dest, value)
            # Locust's handler would convert our fields again, by its own rules: it gets the rest only.
            rest = [(key, text) for key, text in request.form.items(multi=True) if key not in BY_KEY]
            request.form = ImmutableMultiDict(rest)
            return locust_swarm()

        return swarm


def install(web_ui: Any, mock_url: MockUrl) -> None:
    """Give a Locust web UI loadtest's start-form fields and the check of each start; call it from the
    `init` event. `mock_url()` is the built-in mock's URL while it runs, else None."""
    form: StartForm | None = getattr(web_ui, _INSTALLED_ATTR, None)
    if form is not None:
        form.mock_url = mock_url
        return
    form = StartForm(web_ui, mock_url)
    setattr(web_ui, _INSTALLED_ATTR, form)
    # Locust rebuilds the template arguments for every page it serves.
    web_ui.update_template_args = form.update_template_args(web_ui.update_template_args)
    app = web_ui.app
    # The form lists the fields in the order of the page's JSON, whose keys Jinja's `tojson` sorts.
    app.jinja_env.policies["json.dumps_kwargs"] = {"sort_keys": False}
    # Behind Locust's login when there is one: an unauthenticated start must not set options either.
    app.view_functions[SWARM_ENDPOINT] = web_ui.auth_required_if_enabled(
        form.swarm(app.view_functions[SWARM_ENDPOINT])
    )
