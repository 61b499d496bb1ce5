"""Secrets encrypted at rest, and masking them for display.

Owns an instance's key file (`secret.key`, mode 0600, beside config.json, never inside it) and
the `"fernet:<token>"` form of a secret in config.json; one that cannot be decrypted is an error.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import threading
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from pywats_client.errors import SecretError
from pywats_client.fsutil import fsync_dir, write_new_file

log = logging.getLogger(__name__)

PREFIX = "fernet:"

_SET_AGAIN = "set the token again with `pywats-client config set api_token ...`"

# Key files already warned about for loose permissions: warn once per process, not per read.
_warned_modes: set[Path] = set()
_warned_lock = threading.Lock()


def mask(secret: str) -> str:
    """`"****"` for a secret that is set, `""` for one that is not; nothing more. The token is
    base64, so any of its characters are characters of the password; and a short hash would let
    whoever reads it test guesses of a weak password offline."""
    return "****" if secret else ""


class SecretBox:
    """Encrypts and decrypts the secrets of one instance with the key in `key_path`.

    `config_path` only names the config file in error messages (default: config.json beside
    the key).
    """

    def __init__(self, key_path: Path, *, config_path: Path | None = None) -> None:
        self.key_path = key_path
        self.config_path = config_path if config_path is not None else key_path.with_name(
            "config.json"
        )
        self._fernet: Fernet | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SecretBox(key_path={str(self.key_path)!r})"

    @staticmethod
    def is_encrypted(stored: str) -> bool:
        """True if `stored` is an encrypted value as written to config.json."""
        return stored.startswith(PREFIX)

    def encrypt(self, plaintext: str) -> str:
        """The `"fernet:<token>"` form of `plaintext`; creates the key file on first use."""
        fernet = self._get_fernet(create=True)
        return PREFIX + fernet.encrypt(plaintext.encode("utf-8")).decode("ascii")

    def decrypt(self, stored: str, *, key_name: str = "api_token") -> str:
        """The plaintext of `stored`.

        A value without the `fernet:` prefix was written by hand and is returned as it is.
        `key_name` names the config key in error messages.
        """
        if not self.is_encrypted(stored):
            return stored
        fernet = self._get_fernet(create=False, key_name=key_name)
        try:
            plain = fernet.decrypt(stored[len(PREFIX):].encode("ascii"))
        except (InvalidToken, UnicodeEncodeError):
            # `from None`: the chained exception adds nothing for the operator and a traceback
            # must never carry material derived from the secret.
            raise SecretError(
                f"{self.config_path}: {key_name} cannot be decrypted with the key file "
                f"{self.key_path} (the value was encrypted with another key, or it was edited). "
                f"Fix: restore secret.key from backup or {_SET_AGAIN}"
            ) from None
        return plain.decode("utf-8")

    # -- the key file --------------------------------------------------------------------

    def _get_fernet(self, *, create: bool, key_name: str = "api_token") -> Fernet:
        with self._lock:
            if self._fernet is None:
                if create:
                    try:
                        self._create_key_if_missing()
                    except OSError as exc:
                        raise SecretError(
                            f"cannot create the key file {self.key_path} for the secrets of "
                            f"{self.config_path} ({exc.strerror or exc}). Fix: run as the user "
                            "owning the instance folder, or make that folder writable"
                        ) from None
                self._fernet = self._read_key(key_name)
            return self._fernet

    def _read_key(self, key_name: str) -> Fernet:
        try:
            raw = self.key_path.read_bytes()
            mode = stat.S_IMODE(os.stat(self.key_path).st_mode)
        except FileNotFoundError:
            raise SecretError(
                f"{self.config_path}: {key_name} is encrypted but the key file {self.key_path} "
                f"is missing. Fix: restore secret.key from backup or {_SET_AGAIN}"
            ) from None
        except OSError as exc:
            raise SecretError(
                f"{self.config_path}: cannot read the key file {self.key_path} "
                f"({exc.strerror}). Fix: run as the user owning the instance folder, or restore "
                f"secret.key from backup, or {_SET_AGAIN}"
            ) from None
        self._warn_if_readable_by_others(mode)
        try:
            return Fernet(raw.strip())
        except ValueError:
            raise SecretError(
                f"{self.config_path}: the key file {self.key_path} is damaged (not a Fernet "
                f"key). Fix: restore secret.key from backup, or delete it and {_SET_AGAIN}"
            ) from None

    def _create_key_if_missing(self) -> None:
        """Create the key file with a new key unless it exists.

        The key is written to a temporary file and hard-linked into place: `link` fails if the
        name exists, so two processes racing here agree on one key, and no reader ever sees a
        half-written key file.
        """
        if self.key_path.exists():
            return
        folder = self.key_path.parent
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = folder / f".{self.key_path.name}.{os.getpid()}.{threading.get_ident()}.tmp"
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        write_new_file(tmp, Fernet.generate_key() + b"\n", mode=0o600)
        try:
            os.link(tmp, self.key_path)
        except FileExistsError:
            pass  # somebody else created it first: theirs is the key
        except OSError:
            # No hard links on this filesystem: fall back to an exclusive create.
            with contextlib.suppress(FileExistsError):
                write_new_file(self.key_path, tmp.read_bytes(), mode=0o600)
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()
        fsync_dir(folder)
        log.info("created secret key file %s (back it up with config.json)", self.key_path)

    def _warn_if_readable_by_others(self, mode: int) -> None:
        if not mode & 0o077:
            return
        with _warned_lock:
            if self.key_path in _warned_modes:
                return
            _warned_modes.add(self.key_path)
        log.warning(
            "secret key file %s has mode %04o: other users may read it and decrypt the API "
            "token. Fix: chmod 600 %s",
            self.key_path,
            mode,
            self.key_path,
        )
