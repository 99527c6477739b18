"""The Ed25519 key that signs the logs' checkpoints (SPEC section 7), through `cryptography`.

The key is a PEM PKCS#8 file, created on first use with mode 0600. It is created under a
temporary name and linked into place, so a reader never sees a half-written file and two
processes racing to create it end up sharing one key (the loser's link fails; it reads the
winner's). Nothing here logs or returns the private key.

Beside the key, its **trust file** (`<key file>.verifiers`) lists the verifier keys that
`log verify`, `/api/v1/logs` and the record page accept a checkpoint from: the key's own, and
the keys the store had signed with when the file was made (the earlier keys, after a
rotation; see `trusted_keys`). It lives outside the store on purpose: the store's own list
of keys is written by whoever can write the store, and an intruder who re-signed a
checkpoint with a key of its own and listed that key there passed `log verify` (audit,
session 19).
"""

from __future__ import annotations

import logging
import os
import stat
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from . import settings
from .sqlite_url import sqlite_file
from .domain.checkpoint import checkpoint_body, retirement_body, signed_note, verifier_key

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

# cryptography is imported where a key is made, read or checked: at import it cost every
# command 0.015 s of CPU, most of which never sign (session 50, bench/cli_start.py)

log = logging.getLogger("servicetrail.signing")

KEY_FILE_NAME = "servicetrail.key"


class SigningKeyError(RuntimeError):
    """The signing key file exists but cannot be used."""


@dataclass(frozen=True)
class Signer:
    name: str
    _private: Ed25519PrivateKey
    path: Path | None = None  # its file, beside which its trust file is kept

    @property
    def public_key(self) -> bytes:
        return self._private.public_key().public_bytes_raw()

    @property
    def verifier_key(self) -> str:
        return verifier_key(self.name, self.public_key)

    def checkpoint(self, origin: str, size: int, root: bytes) -> str:
        return signed_note(
            checkpoint_body(origin, size, root), self.name, self.public_key, self._private.sign
        )

    def retirement(self, origin: str, size: int, root: bytes, how: str | None = None) -> str:
        body = retirement_body(origin, size, root, how)
        return signed_note(body, self.name, self.public_key, self._private.sign)

    def __repr__(self) -> str:  # never the private key, even in a traceback
        return f"Signer({self.verifier_key!r})"


def default_key_path(database_url: str) -> Path:
    """servicetrail.key beside an SQLite store's file (the file SQLite opens, a `file:` URI's
    too: it was put in a folder named `file:`; review 23f); the working folder otherwise."""
    database = sqlite_file(database_url)
    return database.parent / KEY_FILE_NAME if database is not None else Path(KEY_FILE_NAME)


def _create(path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as out:
            out.write(pem)
            out.flush()
            os.fsync(out.fileno())
        try:
            os.link(temporary, path)  # fails if another process made the key first
        except FileExistsError:
            pass
    finally:
        os.unlink(temporary)


def load_signer(path: Path, name: str) -> Signer:
    """The key at `path` (created now if there is none), named `name` in its signatures. In
    a folder that exists: a mistyped SERVICETRAIL_SIGNING_KEY made its folders and a new
    key, with which every later checkpoint was signed, and which `log verify` with the real
    key then called untrusted (audit 25d); a store in a missing folder is refused so too."""
    if not path.exists():
        try:
            _create(path)
        except OSError as e:  # named as asked, not by the folder or temporary file that failed
            if not path.parent.exists():
                reason = f"the folder {path.parent} does not exist"
            elif not path.parent.is_dir():
                reason = f"{path.parent} is not a folder"
            else:
                reason = e.strerror or type(e).__name__
            raise SigningKeyError(f"the signing key {path} cannot be created: {reason}") from None
    return _read(path, name)


# The keys this process has read, by path and name, each with the file's identity then: a
# read command's seal read its key twice (its check, then the seal) and a server every minute
# (session 62). A file replaced or changed since (a rotation in place) is read again.
_READ: dict[tuple[Path, str], tuple[tuple[int, ...], Signer]] = {}


def _read(path: Path, name: str) -> Signer:
    try:
        seen = path.stat()
    except OSError as e:
        raise SigningKeyError(
            f"the signing key {path} cannot be read: {type(e).__name__}"
        ) from None
    identity = (seen.st_dev, seen.st_ino, seen.st_size, seen.st_mtime_ns, seen.st_ctime_ns)
    kept = _READ.get((path, name))
    if kept is None or kept[0] != identity:
        kept = _READ[(path, name)] = (identity, _loaded(path, name))
    _said_if_others_may_read(path, seen.st_mode)
    return kept[1]


def _loaded(path: Path, name: str) -> Signer:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        private = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError, OSError) as e:
        raise SigningKeyError(
            f"the signing key {path} cannot be read: {type(e).__name__}"
        ) from None
    if not isinstance(private, Ed25519PrivateKey):
        raise SigningKeyError(f"the signing key {path} is not an Ed25519 key")
    return Signer(name, private, path)


_LOOSE_KEYS_SAID: set[Path] = set()


def _said_if_others_may_read(path: Path, st_mode: int) -> None:
    """A key made here is 0600; one copied in with looser rights was used without a word
    (audit 44d). Said once a process: a server uses the key at every seal."""
    mode = stat.S_IMODE(st_mode)
    if mode & 0o077 and path not in _LOOSE_KEYS_SAID:
        _LOOSE_KEYS_SAID.add(path)
        log.warning(
            "the signing key %s may be read by others (mode %04o): chmod 600 it", path, mode
        )


def trust_file(key_path: Path) -> Path:
    return key_path.with_name(key_path.name + ".verifiers")


def _in_trust_file(key_path: Path) -> set[str]:
    """The file's keys: a line each, blank lines and lines starting with # aside."""
    try:
        text = trust_file(key_path).read_text("utf-8")
    except (OSError, UnicodeDecodeError):
        return set()
    lines = (line.strip() for line in text.splitlines())
    return {line for line in lines if line and not line.startswith("#")}


def trusted_keys(key_path: Path, name: str, store_keys: list[str]) -> set[str] | None:
    """The verifier keys trusted beside the signing key at `key_path`, its own among them;
    None when there is neither a key nor a trust file there (no key is created).

    `store_keys`: the keys the store lists as having signed there. Only while there is no
    trust file (a key just made, as after a rotation to a new file; a store from before the
    file; a store and key restored without it) are they taken as they stand, and written
    there: from then on, a key that appears in the store's list is trusted only if the file
    names it or `log verify --key` does. (Taken whenever the signing key was missing from the
    list, they let an intruder who deleted that key's row have its own key trusted: review,
    session 19.) The file is outside the store: who can change it can read the key."""
    own = None
    if key_path.exists():
        with suppress(SigningKeyError):
            own = _read(key_path, name).verifier_key
    if own is not None:
        trust_first(key_path, store_keys, own)
    keys = _in_trust_file(key_path)
    if own is not None:
        if trust_file_unmade(key_path):
            # a key in a folder this process cannot write (a read-only secret mount): the
            # store's keys as they stand, as on first use, each time; `log verify` says so.
            # Trusting the new key alone dropped every earlier key after a rotation (audit 20a)
            keys.update(store_keys)
        keys.add(own)
    return keys or None


def trust_file_unmade(key_path: Path) -> bool:
    """Whether the signing key at `key_path` is there but its trust file is not (it could not
    be written beside it)."""
    return key_path.is_file() and not trust_file(key_path).exists()


def trust_first(key_path: Path, store_keys: list[str], own: str) -> None:
    """The trust file beside `key_path` made with the store's keys and the key's own, if
    there is none yet; else the key's own added to it (a key that replaced another at the
    same path: the earlier one is there already)."""
    if trust_file(key_path).exists():
        trust(key_path, [own])
    else:
        trust(key_path, [*store_keys, own])


def trust(key_path: Path, verifier_keys: list[str]) -> None:
    """Add keys to the trust file beside `key_path` (made if missing). One that cannot be
    written (a read-only folder) is left as it is: `log verify` says what it then trusts."""
    missing = [key for key in dict.fromkeys(verifier_keys) if key not in _in_trust_file(key_path)]
    if missing:
        with suppress(OSError):
            # made 0600 as the key is (docs/operating.md): what it lists is what `log
            # verify` trusts, so no one else may write it; appended whole (O_APPEND)
            made = os.open(trust_file(key_path), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with open(made, "a", encoding="utf-8") as out:
                out.write("".join(f"{key}\n" for key in missing))


def ed25519_check(public_key: bytes, signature: bytes, message: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


def key_path_for(database_url: str) -> Path:
    """SERVICETRAIL_SIGNING_KEY, else servicetrail.key where default_key_path says."""
    configured = settings.current().signing_key
    return Path(configured) if configured else default_key_path(database_url)


def signer_for(database_url: str) -> Signer:
    """The signer of the store at this URL, its key named SERVICETRAIL_LOG_ORIGIN."""
    return load_signer(key_path_for(database_url), settings.current().log_origin)


def trusted_for(database_url: str, store_keys: list[str]) -> set[str] | None:
    """`trusted_keys` beside the signing key of the store at this URL."""
    return trusted_keys(key_path_for(database_url), settings.current().log_origin, store_keys)


def log_prefix() -> str:
    return settings.current().log_origin
