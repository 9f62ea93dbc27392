"""Start-up checks of where the project keeps its files (run by `manage.py check` and every command).

Everything under MEDIA_ROOT is downloadable by signed-in users, and everything under STATIC_ROOT by
anyone. Neither may hold the code, the `.env` file, the SQLite database or the var/ folder (the
database, the embedded Redis's files, var/dev.env): a MEDIA_ROOT left empty once meant the checkout
itself. Refuse to start rather than serve them.
"""

from pathlib import Path

from django.conf import settings
from django.core.checks import Error, register


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _private_paths() -> dict[str, Path]:
    private = {
        "the code (BASE_DIR)": Path(settings.BASE_DIR),
        "the env file": Path(settings.BASE_DIR) / ".env",
        "MCN_VAR_DIR": Path(settings.VAR_DIR),
    }
    for alias, database in settings.DATABASES.items():
        if database["ENGINE"] == "django.db.backends.sqlite3" and str(database["NAME"]) != ":memory:":
            private[f"the {alias} database file"] = Path(database["NAME"])
    return private


@register()
def check_served_folders(app_configs, **kwargs):
    private = {name: path.resolve() for name, path in _private_paths().items()}
    media_root = Path(settings.MEDIA_ROOT).resolve()
    served = {
        "MEDIA_ROOT": (media_root, private),
        # Static files are public: the media (login only) must not be among them either.
        "STATIC_ROOT": (Path(settings.STATIC_ROOT).resolve(), {**private, "MEDIA_ROOT": media_root}),
    }
    errors = []
    for setting, (root, hidden) in served.items():
        exposed = [f"{name} ({path})" for name, path in hidden.items() if _inside(path, root)]
        if exposed:
            errors.append(
                Error(
                    f"{setting}={str(root)!r} would serve {', '.join(exposed)}.",
                    hint=f"Point {setting} at a folder of its own (an empty variable means the default, under "
                    f"{settings.VAR_DIR}).",
                    id="mcn_site.E001",
                )
            )
    return errors
