"""The agent's settings: command line over environment (CHENPI_AGENT_*) over a TOML config file
over defaults. Validation errors raise ConfigError with a sentence naming the setting."""
from __future__ import annotations

import argparse
import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")
ENV_PREFIX = "CHENPI_AGENT_"


class ConfigError(Exception):
    """A setting is missing or wrong; the message says which and why."""


@dataclass(frozen=True)
class Settings:
    api: str  # the service's base URL, e.g. https://trace.example.cn (no trailing slash)
    token: str
    printer: str
    output_dir: Path | None
    once: bool
    poll: float
    log_file: Path | None
    state_dir: Path
    insecure_http: bool
    backoff_max: float
    timeout: float
    lp_timeout: float


def _default_state_dir() -> str:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "chenpi-print-agent")


# key: (kind, default, help). The same keys work on the command line (--output-dir), in the config
# file (output_dir or output-dir) and in the environment (CHENPI_AGENT_OUTPUT_DIR).
KEYS: dict[str, tuple[str, object, str]] = {
    "api": ("str", None, "base URL of the chenpi-trace service, e.g. https://trace.example.cn (HTTPS only)"),
    "token": ("str", None, "bearer token of an `agent` user (better: env CHENPI_AGENT_TOKEN or the config file, "
                           "so it does not show in `ps`)"),
    "printer": ("str", None, "CUPS printer name (passed to `lp -d`; sent to the server with each lease)"),
    "output_dir": ("str", None, "write each job's PDF into this spool directory instead of calling lp"),
    "once": ("bool", False, "process at most one job, then exit (0 also when none waits)"),
    "poll": ("float", 10.0, "seconds between leases while no job waits"),
    "log_file": ("str", None, "log here (rotated at 5 MB, 5 files kept); default: stderr"),
    "state_dir": ("str", None, "directory for the journal and downloads (default: $XDG_STATE_HOME/chenpi-print-agent)"),
    "insecure_http": ("bool", False, "allow a plain-http API URL on a host other than localhost"),
    "backoff_max": ("float", 60.0, "longest wait, in seconds, between retries while the API is down"),
    "timeout": ("float", 30.0, "seconds to wait for an answer from the API"),
    "lp_timeout": ("float", 300.0, "seconds lp may take before it is given up on (its job is acked failed)"),
}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="chenpi-print-agent",
        description="Lease label print jobs from the chenpi-trace API, print each once (CUPS lp or a spool "
                    "directory) and acknowledge it. Settings: command line, then CHENPI_AGENT_<KEY> environment "
                    "variables, then --config FILE (TOML, the same keys).",
        argument_default=argparse.SUPPRESS)
    p.add_argument("--config", metavar="FILE", help="TOML file with the same keys (api, token, printer, …)")
    for key, (kind, _default, help_text) in KEYS.items():
        flag = "--" + key.replace("_", "-")
        if kind == "bool":
            p.add_argument(flag, action="store_true", help=help_text)
        else:
            p.add_argument(flag, type=float if kind == "float" else str, help=help_text,
                           metavar=key.upper() if kind == "str" else "SECONDS")
    return p


def _coerce(key: str, value: object, where: str) -> object:
    kind = KEYS[key][0]
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("1", "true", "yes", "on", "0", "false", "no", "off", ""):
            return value.strip().lower() in ("1", "true", "yes", "on")
        raise ConfigError(f"{key} ({where}) must be true or false, not {value!r}")
    if kind == "float":
        if isinstance(value, bool):
            raise ConfigError(f"{key} ({where}) must be a number of seconds, not {value!r}")
        try:
            number = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise ConfigError(f"{key} ({where}) must be a number of seconds, not {value!r}") from None
        if not (0 < number < 86400 * 7):
            raise ConfigError(f"{key} ({where}) must be more than 0 seconds and under a week, not {value!r}")
        return number
    if not isinstance(value, str):
        raise ConfigError(f"{key} ({where}) must be a string, not {value!r}")
    return value


def _from_file(path: str) -> dict[str, object]:
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    values: dict[str, object] = {}
    for raw_key, value in data.items():
        key = raw_key.replace("-", "_")
        if key not in KEYS:
            raise ConfigError(f"config file {path}: unknown key {raw_key!r} (known: {', '.join(KEYS)})")
        values[key] = _coerce(key, value, f"in {path}")
    return values


def _from_env(environ: dict[str, str]) -> dict[str, object]:
    values: dict[str, object] = {}
    for key in KEYS:
        name = ENV_PREFIX + key.upper()
        if environ.get(name, "") != "":
            values[key] = _coerce(key, environ[name], f"env {name}")
    return values


def _api_base(url: str, insecure_http: bool) -> str:
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"api must be an https:// URL such as https://trace.example.cn, not {url!r}")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ConfigError(f"api must be a plain base URL without credentials, query or fragment, not {url!r}")
    if parts.scheme == "http" and parts.hostname not in LOCAL_HOSTS and not insecure_http:
        raise ConfigError(f"api {url!r} is plain http: the token and the labels would cross the network "
                          "unencrypted. Use https:// (or --insecure-http on a network you trust)")
    path = parts.path.rstrip("/")
    path = re.sub(r"/api/v1$", "", path)  # accept the API root as well as the service's base
    return f"{parts.scheme}://{parts.netloc}{path}"


def load(argv: list[str] | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Settings from the command line, the environment and the config file; ConfigError if wrong."""
    environ = dict(os.environ if environ is None else environ)
    args = vars(parser().parse_args(argv))
    config_path = args.pop("config", None) or environ.get(ENV_PREFIX + "CONFIG") or None
    merged: dict[str, object] = {key: default for key, (_, default, _) in KEYS.items()}
    if config_path:
        merged.update(_from_file(config_path))
    merged.update(_from_env(environ))
    merged.update({k: _coerce(k, v, "command line") for k, v in args.items()})

    for key in ("api", "token", "printer"):
        if not merged[key] or not str(merged[key]).strip():
            flag = "--" + key.replace("_", "-")
            raise ConfigError(f"{key} is required: give {flag}, env {ENV_PREFIX}{key.upper()} or `{key} = ...` in --config")
    token = str(merged["token"]).strip()
    if re.search(r"\s", token):
        raise ConfigError("token must not contain spaces or line breaks")
    printer = str(merged["printer"]).strip()
    if not re.fullmatch(r"[^\s/#\\'\"-][^\s/#\\'\"]{0,126}", printer):
        raise ConfigError(f"printer {printer!r} is not a CUPS printer name (1-127 characters, no spaces, "
                          "slashes, '#' or quotes, not starting with '-')")
    output_dir = Path(str(merged["output_dir"])).expanduser() if merged["output_dir"] else None
    log_file = Path(str(merged["log_file"])).expanduser() if merged["log_file"] else None
    state_dir = Path(str(merged["state_dir"] or _default_state_dir())).expanduser()
    return Settings(api=_api_base(str(merged["api"]), bool(merged["insecure_http"])), token=token, printer=printer,
                    output_dir=output_dir, once=bool(merged["once"]), poll=float(merged["poll"]),  # type: ignore[arg-type]
                    log_file=log_file, state_dir=state_dir, insecure_http=bool(merged["insecure_http"]),
                    backoff_max=float(merged["backoff_max"]), timeout=float(merged["timeout"]),  # type: ignore[arg-type]
                    lp_timeout=float(merged["lp_timeout"]))  # type: ignore[arg-type]
