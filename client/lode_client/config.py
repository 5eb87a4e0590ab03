"""Where to reach Lode and with which key: arguments, then ``LODE_URL`` / ``LODE_API_KEY``, then
a named profile in ``~/.config/lode/config.toml`` (``LODE_CONFIG`` to put it elsewhere)::

    default = "demo"

    [profiles.demo]
    url = "http://127.0.0.1:8000"
    api_key = "lode_…"

``lode-client login`` writes a profile; the file is created with mode 0600, for it holds keys.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from lode_client.errors import ConfigurationError

DEFAULT_PROFILE = "default"


@dataclass(frozen=True)
class Settings:
    url: str
    api_key: str | None
    profile: str | None


def config_path() -> Path:
    configured = os.environ.get("LODE_CONFIG")
    if configured:
        return Path(configured).expanduser()
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "lode" / "config.toml"


def read_profiles(path: Path | None = None) -> tuple[str | None, dict[str, dict[str, str]]]:
    path = path or config_path()
    if not path.exists():
        return None, {}
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{path} is not valid TOML: {exc}") from exc
    profiles = data.get("profiles") or {}
    return data.get("default"), {name: dict(values) for name, values in profiles.items()}


def resolve(url: str | None = None, api_key: str | None = None, profile: str | None = None) -> Settings:
    """The arguments win; then a profile named by argument or ``LODE_PROFILE``; else the environment,
    then the file's default profile for whatever is still missing."""
    default, profiles = read_profiles()
    name = profile or os.environ.get("LODE_PROFILE") or None
    if name is not None and name not in profiles:
        raise ConfigurationError(f"No profile {name!r} in {config_path()}; `lode-client login` writes one.")
    if name is None:
        url = url or os.environ.get("LODE_URL") or None
        api_key = api_key or os.environ.get("LODE_API_KEY") or None
        if (url is None or api_key is None) and default in profiles:
            name = default
    values = profiles.get(name, {}) if name else {}
    url = url or values.get("url")
    api_key = api_key or values.get("api_key")
    if not url:
        raise ConfigurationError(
            "No Lode URL: give one (url= in Python, --url on the command line), set LODE_URL, or name a profile "
            "(--profile) that `lode-client login` wrote."
        )
    return Settings(url=url.rstrip("/"), api_key=api_key, profile=name)


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_profile(name: str, url: str, api_key: str, *, make_default: bool = False, path: Path | None = None) -> Path:
    """Add or replace one profile, keeping the others; the file is private to its owner (0600)."""
    path = path or config_path()
    default, profiles = read_profiles(path)
    profiles[name] = {"url": url.rstrip("/"), "api_key": api_key}
    if make_default or default is None:
        default = name
    lines = [f"default = {_quoted(default)}", ""]
    for profile, values in sorted(profiles.items()):
        lines.append(f"[profiles.{_quoted(profile)}]")
        lines += [f"{key} = {_quoted(str(value))}" for key, value in sorted(values.items())]
        lines.append("")
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as out:
        out.write("\n".join(lines))
    os.chmod(path, 0o600)  # an existing file keeps its mode through O_CREAT: set it
    return path
